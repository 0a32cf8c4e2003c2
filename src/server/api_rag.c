/* The retrieval API: being built; until then every path answers 501. */
#include "handlers.h"
#include "replies.h"

enum MHD_Result srv_rag_dispatch(srv_conn *c) {
    return srv_reply_error(c, 501, "not_implemented", NULL, "The retrieval API is not implemented yet");
}
