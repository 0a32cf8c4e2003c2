/* PERSON, LOCATION and ADDRESS: context rules (greetings, sign-offs, "Name:", "lives in",
 * "Wohnort:", "né le", honorifics), capitalisation, and gazetteers of first names, last names,
 * cities and street words compiled from Faker's locales (pii_gazetteer_data.c).
 *
 * Names: a run of capitalised words is a PERSON after a strong trigger ("Dear", "Name:", "Hallo",
 * "titulaire", an honorific, a sign-off), after a weak one ("to", "for", "from") when it starts with
 * a known first name, and with no trigger when it is a known first name followed by a known last
 * name. Places: a run after "lives in"/"Wohnort:"/"ville :" (or after an IP address), or after
 * "from"/"in"/"aus" when it is a known city or shaped like one ("North ...", "...ville").
 * Addresses: parsed forward from a house number, a unit word or a street word, segment by segment
 * (", " or a line break), up to a postcode with its town (US state + ZIP, UK postcode, 4-5 digit
 * European codes) and an optional country. */
#include <string.h>

#include "pii/pii_internal.h"

extern const char *const pii_gz_first[], *const pii_gz_last[], *const pii_gz_city[], *const pii_gz_city_prefix[],
    *const pii_gz_city_suffix[], *const pii_gz_street[], *const pii_gz_country[];
extern const size_t pii_gz_first_count, pii_gz_last_count, pii_gz_city_count, pii_gz_city_prefix_count,
    pii_gz_city_suffix_count, pii_gz_street_count, pii_gz_country_count;

/* Is the Latin Extended-A code point (U+0100..U+017F) a capital? Pairs alternate capital/small,
 * starting on an even code point except in U+0139..U+0148 and U+0179..U+017E. */
static bool ext_a_upper(unsigned cp) {
    if (cp < 0x100 || cp > 0x17F || cp == 0x138 || cp == 0x149 || cp == 0x17F) return false;
    if ((cp >= 0x139 && cp <= 0x148) || (cp >= 0x179 && cp <= 0x17E)) return cp & 1;
    if (cp == 0x178) return true;
    return (cp & 1) == 0;
}

size_t pii_fold(const unsigned char *w, size_t len, char *out, size_t cap) {
    if (len >= cap) return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned c = w[i];
        if (c >= 'A' && c <= 'Z') c += 32;
        else if (i > 0 && w[i - 1] == 0xC3 && c >= 0x80 && c <= 0x9E && c != 0x97) c += 0x20;
        else if (i > 0 && (w[i - 1] == 0xC4 || w[i - 1] == 0xC5) && c >= 0x80 && c <= 0xBF) {
            unsigned cp = ((w[i - 1] & 0x1Fu) << 6) | (c & 0x3Fu);
            if (ext_a_upper(cp) && cp != 0x178) {
                unsigned lo = cp + 1;
                if ((lo >> 6) == (cp >> 6)) c = 0x80 | (lo & 0x3F); /* same lead byte (not U+013F->0x140 edge) */
            }
        }
        out[i] = (char)c;
    }
    out[len] = 0;
    return len;
}

static int cmp_key(const char *a, const char *key, size_t klen) {
    int r = strncmp(a, key, klen);
    if (r) return r;
    return a[klen] ? 1 : 0;
}

static bool sorted_has(const char *const *arr, size_t n, const char *key, size_t klen) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int r = cmp_key(arr[mid], key, klen);
        if (r == 0) return true;
        if (r < 0) lo = mid + 1;
        else hi = mid;
    }
    return false;
}

bool pii_gz_has(pii_gz list, const unsigned char *w, size_t len) {
    char buf[64];
    if (!pii_fold(w, len, buf, sizeof buf)) return false;
    (void)sorted_has;
    switch (list) {
    case GZ_FIRST: return pii_in_set(pii_gz_first, buf, len);
    case GZ_LAST: return pii_in_set(pii_gz_last, buf, len);
    case GZ_CITY: return pii_in_set(pii_gz_city, buf, len);
    case GZ_CITY_PREFIX: return pii_in_set(pii_gz_city_prefix, buf, len);
    case GZ_CITY_SUFFIX: return pii_in_set(pii_gz_city_suffix, buf, len);
    case GZ_STREET: return pii_in_set(pii_gz_street, buf, len);
    case GZ_COUNTRY: return pii_in_set(pii_gz_country, buf, len);
    default: return false;
    }
}

static bool in_list(const char *const *list, const char *w, size_t len) { return pii_in_set(list, w, len); }

static const char *const MONTH_FIRST[] = {"april", "may", "june", "july", "august", NULL};

static const char *const LOC_PART[] = {"am", "an", "der", "im", "sur", "sous", "le", "la", "de", "en", "upon", "on", "del", "di", "ob", "bei", NULL};

static const char *const ARTICLE[] = {"le", "la", "les", "el", "los", "las", "il", "lo", "den", "de", "l'", "the", NULL};

static const char *const MORE[] = {"usa", "u.s.a", "us", "uk", "deutschland", "germany", "france", "österreich", "schweiz", "suisse", "españa", "italia", "nederland", "belgique", "belgië", "united states", "united kingdom", NULL};

/* Words after a name that make it a company ("Miller Ltd", "Schmidt GmbH", "Dubois SARL"). */
static const char *const COMPANY_WORDS[] = {"inc", "inc.", "llc", "ltd", "ltd.", "plc", "gmbh", "ag", "kg", "ohg",
                                            "sa", "s.a.", "sarl", "s.a.r.l.", "sas", "bv", "b.v.", "nv", "n.v.",
                                            "spa", "s.p.a.", "srl", "s.r.l.", "sl", "s.l.", "co", "co.", "corp",
                                            "corp.", "corporation", "company", "group", "gruppe", "groupe",
                                            "holding", "holdings", "partners", "partner", "associates", "bank",
                                            "solutions", "systems", "technologies", "consulting", "services",
                                            "international", "industries", "enterprises", "ventures", "labs",
                                            "studios", "media", "pty", "lp",
                                            "llp", "se", "ab", "oy", "as", "a/s", NULL};

/* Words that place a person in the sentence, required before a weak place trigger ("I'm from",
 * "the customer is in"), so "the train from Berlin" stays unmarked. */
static const char *const PERSON_ANCHOR[] = {"i", "i'm", "im", "me", "my", "we", "our", "us", "he", "she", "his",
                                            "her", "they", "their", "them", "you", "your", "ich", "mich", "mir",
                                            "mein", "meine", "wir", "unser", "er", "sie", "ihr", "je", "j'",
                                            "moi", "mon", "ma", "mes", "nous", "il", "elle", "ils", "elles", "yo",
                                            "mi", "io", "ik", "mijn", "eu", "customer", "patient", "client",
                                            "cliente", "user", "kunde", "kundin", "caller", "lives", "born",
                                            "moved", "login", "sign-in", "signed", "device", "anmeldung", "geb",
                                            "geb.", "geboren", "né", "née", "nato", "nata", "nacido", "nacida",
                                            "wohnhaft", "lebt", "wohnt", "habite", "vive", "vivo", "hola", "hello",
                                            "hi", "hey", "dear", "hallo", "bonjour", "ciao", "buongiorno", "beste",
                                            "te", "nos", "noi", "wij", "escribo", "estoy", "soy", "sono", "sto",
                                            "connexion", "ip", "address", "adresse", "name", "nom", NULL};

static bool person_anchor_before(const pii_scan *x, size_t p) {
    size_t lo = p > 120 ? p - 120 : 0;
    for (size_t i = lo; i < p; i++) {
        if (i > lo && pii_is_word_at(x->s, x->n, i - 1)) continue;
        if (!pii_is_word_at(x->s, x->n, i)) continue;
        size_t e = i;
        while (e < p && (pii_is_word_at(x->s, x->n, e) || x->s[e] == '\'' || x->s[e] == '-')) e++;
        if (pii_in_set(PERSON_ANCHOR, x->low + i, e - i)) return true;
        i = e;
    }
    return false;
}

/* ---------- words ---------- */

/* At the end of a partial text the answer is undecided (pii_at marks it): a name may go on
 * ("M de de" + "Pg"). */
static bool is_cap_at(pii_scan *x, size_t p) {
    if (p >= x->n) return pii_at(x, p) != 0;
    unsigned c = x->s[p];
    if (pii_is_upper(c)) return true;
    if (p + 1 == x->n && c >= 0xC3 && c <= 0xC5) pii_at(x, p + 1);
    if (p + 1 < x->n) {
        unsigned d = x->s[p + 1];
        if (c == 0xC3 && d >= 0x80 && d <= 0x9E && d != 0x97) return true;
        if ((c == 0xC4 || c == 0xC5) && d >= 0x80 && d <= 0xBF && ext_a_upper(((c & 0x1Fu) << 6) | (d & 0x3Fu)))
            return true;
    }
    return false;
}

/* End of the word at p: letters/digits, with inner hyphens and apostrophes ("Horst-Günter", "O'Neil"). */
static size_t word_end(pii_scan *x, size_t p) {
    size_t i = p;
    for (;;) {
        while (i < x->n && pii_is_word_at(x->s, x->n, i)) i++;
        if (i == x->n) pii_at(x, i); /* may continue */
        unsigned c = pii_at(x, i);
        if ((c == '-' || c == '\'') && pii_is_word_at(x->s, x->n, i + 1) && i > p) {
            i++;
            continue;
        }
        if (c == 0xE2 && pii_at(x, i + 1) == 0x80 && pii_at(x, i + 2) == 0x99 && pii_is_word_at(x->s, x->n, i + 3) &&
            i > p) {
            i += 3;
            continue;
        }
        if (i + 1 >= x->n && (c == '-' || c == '\'' ) ) pii_at(x, i + 1);
        break;
    }
    return i;
}

static bool has_letter(const pii_scan *x, size_t a, size_t b) {
    for (size_t i = a; i < b; i++)
        if (pii_is_alpha(x->s[i]) || x->s[i] >= 0xC3) return true;
    return false;
}

static bool all_digits(const pii_scan *x, size_t a, size_t b) {
    for (size_t i = a; i < b; i++)
        if (!pii_is_digit(x->s[i])) return false;
    return a < b;
}

/* Lower-case word comparisons against small lists (the lowercased copy of the text). */
static bool low_in(const pii_scan *x, size_t a, size_t b, const char *const *list) {
    return in_list(list, x->low + a, b - a);
}

/* Capitalised words that are not names: function words, greetings, roles, months, days, and
 * nouns often capitalised at a sentence start or in German. */
static const char *const NOT_NAME[] = {
    "i", "a", "an", "the", "this", "that", "these", "those", "my", "your", "our", "his", "her", "their", "we",
    "you", "he", "she", "it", "they", "me", "us", "hi", "hello", "hey", "dear", "thanks", "thank", "please",
    "regards", "best", "kind", "sincerely", "cheers", "yours", "mr", "mrs", "ms", "miss", "dr", "prof", "sir",
    "madam", "madame", "monsieur", "mme", "mlle", "herr", "frau", "fräulein", "team", "all", "everyone", "there",
    "customer", "client", "cliente", "patient", "patientin", "support", "service", "admin", "user", "friend",
    "friends", "colleagues", "kunde", "kundin", "damen", "herren", "liebe", "lieber", "hallo", "bonjour", "salut",
    "cher", "chère", "mesdames", "messieurs", "name", "nom", "monday", "tuesday", "wednesday", "thursday", "friday",
    "saturday", "sunday", "january", "february", "march", "april", "may", "june", "july", "august", "september",
    "october", "november", "december", "montag", "dienstag", "mittwoch", "donnerstag", "freitag", "samstag",
    "sonntag", "lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche", "ticket", "invoice",
    "order", "account", "holder", "phone", "email", "e-mail", "address", "subject", "re", "fw", "fwd", "from",
    "to", "cc", "date", "ok", "yes", "no", "not", "and", "or", "but", "for", "with", "in", "on", "at", "of", "by",
    "is", "are", "was", "be", "can", "could", "would", "should", "will", "shall", "do", "does", "did", "have",
    "has", "had", "if", "when", "where", "why", "how", "what", "which", "who", "whom", "here", "now", "then",
    "also", "just", "still", "new", "old", "good", "great", "happy", "welcome", "sorry", "note", "notes", "update",
    "urgent", "important", "attention", "summary", "discharge", "referral", "statement", "security", "alert",
    "escalation", "refund", "payment", "bank", "card", "credit", "debit", "iban", "bic", "swift", "ssn", "dob",
    "api", "key", "token", "secret", "password", "login", "server", "ip", "url", "http", "https", "www",
    "aws", "github", "slack", "stripe", "google", "openai", "microsoft", "apple", "amazon", "facebook", "linkedin",
    "dropbox", "onedrive", "office", "english", "german", "french", "spanish", "italian", "dutch", "deutsch",
    "français", "englisch", "anglais", "allemand", "ihre", "ihr", "ihnen", "sie", "du", "dein", "deine", "wir",
    "ich", "mein", "meine", "bitte", "danke", "vielen", "dank", "grüße", "gruß", "viele", "freundlichen",
    "mit", "und", "oder", "der", "die", "das", "den", "dem", "des", "ein", "eine", "einen", "sehr", "geehrte",
    "geehrter", "guten", "tag", "morgen", "abend", "je", "tu", "il", "elle", "nous", "vous", "ils", "elles",
    "le", "la", "les", "un", "une", "mon", "ma", "mes", "votre", "vos", "notre", "merci", "cordialement",
    "bien", "à", "de", "et", "ou", "pour", "avec", "dans", "sur", "par", "est", "rue", "avenue", "street", "road",
    "apt", "suite", "flat", "studio", "unit", "box", "po", "north", "south", "east", "west",
    "lake", "port", "mount", "saint", "sainte", "san", "santa", "st", "nurse", "doctor", "teacher", "carpenter",
    "pharmacist", "engineer", "manager", "analyst", "developer", "designer", "accountant", "lawyer", "director",
    "ceo", "cto", "hr", "it", "qa", "pr", "tel", "fax", "mobile", "handy", "telefon", "adresse", "wohnort",
    "geburtsdatum", "geboren", "konto", "kontoinhaber", "kontoinhaberin", "titulaire", "courriel", "ville",
    "date", "naissance", "tél", "mobil", "hinweis", "sicherheitshinweis", "neue", "anmeldung", "rechnung",
    "facture", "commande", "bestellung", "lastschrift", "prélèvement", "virement", "überweisung", "transfer",
    "wire", "sepa", "eur", "usd", "gbp", "chf", "visa", "mastercard", "amex", "best,", "write", "draft", "can",
    "could", "summarize", "translate", "rewrite", "explain", "help", "send", "call", "reply", "see", "let",
    "thanks,", "regards,", "ps", "p.s", "nb", "fyi", "asap", "eta", "pdf", "csv", "json", "yaml", "sql",
    "python", "java", "javascript", "linux", "windows", "mac", "ios", "android", "chrome", "firefox", "wi-fi",
    "wifi", "tcp", "udp", "dns", "vpn", "ssh", "ssl", "tls", "cpu", "gpu", "ram", "usb", "bp", "hba1c", "mg",
    "covid", "mrt", "mri", "ct", "ekg", "ecg", "inc", "ltd", "llc", "gmbh", "ag", "sa", "sarl", "co", "corp",
    "company", "university", "hospital", "clinic", "klinik", "hôpital", "école", "school", "department",
    "christmas", "easter", "weihnachten", "noël", "ostern", NULL};

static bool not_name(const pii_scan *x, size_t a, size_t b) {
    if (b - a > 40) return true;
    return low_in(x, a, b, NOT_NAME);
}

/* ---------- triggers ---------- */

typedef enum { TRIG_NONE, TRIG_WEAK, TRIG_STRONG } trig;

static const char *const HONORIFIC[] = {"mr", "mrs", "ms", "miss", "mx", "dr", "prof", "herr", "frau", "fräulein",
                                        "madame", "mme", "mlle", "mademoiselle", "monsieur", "m", "sir", "dame",
                                        "señor", "señora", "sr", "sra", "srta", "don", "doña", "signor", "signora",
                                        "sig", "sig.ra", "dott", "mevrouw", "meneer", "dhr", "mevr", "pan", "pani",
                                        "lord", "lady", NULL};

/* Phrases that end right before a person's name (lower case, without trailing punctuation). */
static const char *const PERSON_STRONG[] = {
    "hi", "hello", "hey", "dear", "greetings", "good morning", "good afternoon", "good evening", "hallo", "hallo,",
    "liebe", "lieber", "moin", "servus", "guten tag", "bonjour", "bonsoir", "salut", "cher", "chère", "coucou",
    "hola", "buenos días", "estimado", "estimada", "ciao", "buongiorno", "caro", "cara", "gentile", "beste",
    "geachte", "hoi", "olá", "caro", "querido", "querida", "hej", "witam",
    "name", "full name", "my name is", "name is", "mi nombre es", "mi nombre", "ik heet", "heet",
    "il mio nome è", "chamo-me", "o meu nome é", "meu nome é", "nazywam się", "jmenuji se", "jag heter",
    "mitt namn är", "jeg heter", "mit navn er", "nimeni on", "nome completo", "nombre completo",
    "nom complet", "vollständiger name", "patient name", "customer name", "client name", "account name",
    "cardholder name", "sender", "absender", "expéditeur", "remitente", "mittente", "afzender", "envoyé par",
    "sent by", "gesendet von", "firmado", "signé", "i am", "i'm", "im", "this is", "it's", "je m'appelle",
    "je suis", "ich heiße", "ich heisse", "ich bin", "mein name ist", "me llamo", "mi chiamo", "mijn naam is",
    "ik ben", "nom", "prénom", "vorname", "nachname", "nombre", "nome", "naam", "surname", "last name",
    "first name", "holder", "account holder", "cardholder", "card holder", "kontoinhaber", "kontoinhaberin",
    "inhaber", "inhaberin", "titulaire", "bénéficiaire", "beneficiary", "payee", "recipient", "empfänger",
    "patient", "patientin", "patiente", "pt", "customer", "client", "cliente", "caller", "kunde", "kundin",
    "contact", "contact person", "ansprechpartner", "ansprechpartnerin", "employee", "mitarbeiter",
    "mitarbeiterin", "user", "member", "applicant", "tenant", "landlord", "guest", "passenger", "driver",
    "from", "to", "cc", "attn", "attention", "von", "an", "de", "à", "à l'attention de", "signed", "gez",
    "regards", "best regards", "kind regards", "warm regards", "best", "best wishes", "thanks", "thank you",
    "many thanks", "cheers", "sincerely", "yours sincerely", "yours truly", "yours", "love", "take care",
    "viele grüße", "liebe grüße", "beste grüße", "freundliche grüße", "mit freundlichen grüßen", "grüße", "gruß",
    "lg", "vg", "mfg", "cordialement", "bien cordialement", "bien à vous", "amicalement", "bisous", "merci",
    "salutations", "atentamente", "saludos", "cordiali saluti", "saluti", "met vriendelijke groet", "groeten",
    "statement for", "summary for", "letter for", "on file for", "account of", "next of kin", "daughter", "son",
    "wife", "husband", "mother", "father", "brother", "sister", "partner", "spouse", "tochter", "sohn", "frau",
    "mann", "mutter", "vater", "fille", "fils", "épouse", "mari", "mère", "père", "assigned to", "owner",
    "signed by", "prepared by", "written by", "approved by", "requested by", "reported by", "caller is",
    "referred by", "seen by", "treated by", "physician", "gp", "doctor", "nurse", "dr", "on behalf of",
    "la cliente", "le client", "der kunde", "die kundin", "emergency contact", "notfallkontakt", "contact d'urgence",
    "am", "invite", "meet", "met", "ask", "tell", "told", "called", "named", "calls", "call", "email", "e-mail",
    "message", "write to", "reply to", "forward to", "send to", "cc:", "with", "colleague", "kollege",
    "kollegin", "collègue", "manager", "boss", "chef", "cheffe", "neighbour", "neighbor", "nachbar", "voisin",
    "voisine", "friend", "freund", "freundin", "ami", "amie", "new hire", "hire", "reach", "ping", "visit",
    "assistant", "secretary", "sekretärin", "intern", "candidate", "bewerber", "bewerberin", "candidat",
    "candidate", "author", "speaker", "host", "organizer", "trainer", "coach", "teacher", "lehrer", "lehrerin",
    "professeur", "student", "studentin", "étudiant", "étudiante", NULL};

/* Strong triggers that also take an all-lower-case name ("my name is frank price"). */
static const char *const PERSON_LOWER_OK[] = {"my name is", "name is", "je m'appelle", "ich heiße", "ich heisse",
                                              "mi nombre es", "ik heet", "jag heter", "jeg heter",
                                              "mein name ist", "me llamo", "mi chiamo", "mijn naam is", "name",
                                              "i'm", "i am", "this is", NULL};

/* Weak triggers: the run must start with a known first name. */
static const char *const PERSON_WEAK[] = {"to", "for", "from", "by", "with", "of", "an", "à", "für", "pour",
                                          "avec", "mit", "para", "per", "voor", "met", "–", "-", "—",
                                          "says", "said", "asked", "wrote", NULL};

/* Trigger words that are roles or verbs usable only as weak triggers when lowercase-initial in text
 * (these came in through PERSON_STRONG but read as ordinary words): the run then needs a known first
 * name. */
static const char *const PERSON_STRONG_NEEDS_NAME[] = {
    "from", "to", "cc", "von", "an", "de", "à", "am", "invite", "meet", "met", "ask", "tell", "told", "called",
    "named", "calls", "call", "email", "e-mail", "message", "write to", "reply to", "forward to", "send to",
    "with", "user", "member", "owner", "love", "contact", "it's", "this is", "im", "son", "mann", "frau",
    "friend", "freund", "ami", "amie", "pt", "gp", "merci", "thanks", "thank you", "best", "yours", "doctor",
    "nurse", "physician", "manager", "boss", "chef", "colleague", "driver", "guest", "passenger", "hire", "reach",
    "ping", "visit", "host", "author", "speaker", "student", "teacher", "trainer", "coach", "candidate", NULL};

/* Looks back from p over spaces, then over one piece of punctuation (":", ",", "(", dashes), then
 * over spaces again; returns the position where the trigger phrase should end. */
static size_t skip_back_punct(const pii_scan *x, size_t p, bool *newline) {
    size_t i = p;
    *newline = false;
    while (i > 0 && p - i < 32 && (x->s[i - 1] == ' ' || x->s[i - 1] == '\t' || x->s[i - 1] == '\n' || x->s[i - 1] == '\r')) {
        if (x->s[i - 1] == '\n') *newline = true;
        i--;
    }
    if (i > 0 && (x->s[i - 1] == ':' || x->s[i - 1] == ',' || x->s[i - 1] == '(' || x->s[i - 1] == ';' ||
                  x->s[i - 1] == '"' || x->s[i - 1] == '\'')) {
        i--;
        while (i > 0 && p - i < 64 && (x->s[i - 1] == ' ' || x->s[i - 1] == '\n' || x->s[i - 1] == '\t' || x->s[i - 1] == '\r')) {
            if (x->s[i - 1] == '\n') *newline = true;
            i--;
        }
    }
    return i;
}

/* Does the lowercased text ending at e end with one of the phrases (a phrase starts after a space
 * or at a word boundary)? Returns the longest phrase's start or SIZE_MAX; which and which_len get the
 * matched text. Phrases have at most 5 words. */
static size_t ends_with_phrase(const pii_scan *x, size_t e, const char *const *list, const char **which,
                               size_t *which_len) {
    size_t best = (size_t)-1;
    size_t i = e;
    {
        /* the token ending at e must be some phrase's last word */
        size_t t = e;
        while (t > 0 && x->s[t - 1] != ' ' && x->s[t - 1] != '\n' && x->s[t - 1] != '\t' && e - t < 40) t--;
        size_t t2 = t;
        while (t2 < e && t2 - t < 3 && !pii_is_word_at(x->s, x->n, t2)) t2++;
        if (t == e || (!pii_in_set_last_word(list, x->low + t, e - t) && !pii_in_set_last_word(list, x->low + t2, e - t2)))
            return best;
    }
    for (int w = 0; w < 4 && i > 0; w++) {
        size_t tok_end = i;
        while (i > 0 && x->s[i - 1] != ' ' && x->s[i - 1] != '\n' && x->s[i - 1] != '\t' && tok_end - i < 40) i--;
        /* a phrase may also start inside the token after punctuation: "(holder" */
        size_t st2 = i;
        while (st2 < tok_end && st2 - i < 3 && !pii_is_word_at(x->s, x->n, st2)) st2++;
        for (size_t st = i; st < tok_end; st = st == i && st2 > i ? st2 : tok_end) {
            if (in_list(list, x->low + st, e - st)) {
                best = st;
                if (which) *which = x->low + st;
                if (which_len) *which_len = e - st;
                break;
            }
        }
        if (i == 0 || x->s[i - 1] != ' ') break;
        i--;
    }
    return best;
}

/* The trigger class for a name starting at p; *lower_ok when an all-lowercase name may follow. */
static trig person_trigger(const pii_scan *x, size_t p, bool *lower_ok, bool *needs_name) {
    *lower_ok = false;
    *needs_name = false;
    bool nl;
    size_t e = skip_back_punct(x, p, &nl);
    /* an honorific right before ("Mr. ", "Frau ") */
    size_t h = e;
    if (h > 0 && x->s[h - 1] == '.') h--;
    size_t hs = h;
    while (hs > 0 && pii_is_word_at(x->s, x->n, hs - 1) && h - hs < 16) hs--;
    if (hs < h && low_in(x, hs, h, HONORIFIC) && (x->s[hs] != 'm' || h - hs > 1)) return TRIG_STRONG;
    if (hs < h && h - hs == 1 && x->s[hs] == 'M' && h < e) return TRIG_STRONG; /* "M. Dupont" */
    const char *which = NULL;
    size_t wl = 0;
    if (ends_with_phrase(x, e, PERSON_STRONG, &which, &wl) != (size_t)-1) {
        if (in_list(PERSON_LOWER_OK, which, wl)) *lower_ok = true;
        if (in_list(PERSON_STRONG_NEEDS_NAME, which, wl)) *needs_name = true;
        return TRIG_STRONG;
    }
    if (ends_with_phrase(x, e, PERSON_WEAK, NULL, NULL) != (size_t)-1) return TRIG_WEAK;
    /* a name alone on the last line, after a sign-off line, is handled by the sign-off phrases;
     * a name at the start of a line after a blank line reads as a signature only with a first name */
    if (nl) return TRIG_WEAK;
    return TRIG_NONE;
}

static const char *const PARTICLES[] = {"van", "von", "de", "du", "der", "den", "da", "di", "del", "della", "dos",
                                        "das", "le", "la", "ten", "ter", "zu", "vom", "zum", "d'", "l'", "st.", "mc",
                                        "bin", "ibn", "al", NULL};

/* Street-type words and abbreviations that open a street name in many locales. */
static const char *const STREET_OPEN[] = {"r.", "av", "av.", "avda", "avda.", "ul.", "pl.", "al.", "os.", "c/",
                                          "c.", "rua", "travessa", "largo", "praça", "estrada", "via", "viale",
                                          "piazza", "piazzale", "borgo", "contrada", "vicolo", "corso", "calle",
                                          "avenida", "paseo", "plaza", "camino", "ronda", "carrer", "rambla",
                                          "cesta", "ulica", "aleja", "rue", "chemin", "boulevard", "bd", "bd.",
                                          "impasse", "allée", "quai", "cours", "place", "route", "avenue",
                                          "sentier", "passage", "square", "voie", "rond-point", NULL};

/* A run of up to 4 name words from p separated by single spaces. Returns the count; ends[] holds
 * each word's end, starts[] its start. lower: accept lower-case words. */
static int name_run(pii_scan *x, size_t p, bool lower, size_t *starts, size_t *ends) {
    int k = 0;
    size_t i = p;
    while (k < 4) {
        bool cap = is_cap_at(x, i);
        if (!cap && !(lower && pii_is_lower(x->s[i]))) {
            /* a particle inside a name: "Ludwig van Beethoven" */
            if (k > 0 && pii_is_lower(x->s[i])) {
                size_t e = word_end(x, i);
                if (low_in(x, i, e, PARTICLES) && pii_at(x, e) == ' ') {
                    size_t j = e + 1;
                    if (pii_is_lower(pii_at(x, j))) { /* "van der" */
                        size_t e2 = word_end(x, j);
                        if (!low_in(x, j, e2, PARTICLES) || pii_at(x, e2) != ' ') break;
                        j = e2 + 1;
                    }
                    if (is_cap_at(x, j) && k < 3) {
                        starts[k] = i;
                        ends[k] = j - 1;
                        k++;
                        i = j;
                        continue;
                    }
                }
            }
            break;
        }
        size_t e = word_end(x, i);
        if (e == i || !has_letter(x, i, e)) break;
        if (k == 0 && (low_in(x, i, e, STREET_OPEN) || (pii_at(x, e) == '.' && low_in(x, i, e + 1, STREET_OPEN))))
            break;
        {
            bool caps = e - i >= 2;
            for (size_t j = i; j < e && caps; j++) caps = !pii_is_lower(x->s[j]) && x->s[j] < 0x80;
            if (caps) break; /* "NDA", "HI": acronyms and codes, not names */
        }
        for (size_t j = i; j < e; j++)
            if (pii_is_digit(x->s[j])) return k;
        /* an initial: "John F. Kennedy", "J. Smith" */
        if (e == i + 1 && pii_is_upper(x->s[i]) && pii_at(x, e) == '.' && pii_at(x, e + 1) == ' ' &&
            is_cap_at(x, e + 2)) {
            starts[k] = i;
            ends[k] = e + 1;
            k++;
            i = e + 2;
            continue;
        }
        if (not_name(x, i, e)) {
            /* "April Becker", "June Riley": a month that is also a first name, before a last name */
            size_t e2 = 0;
            if (!(k == 0 && low_in(x, i, e, MONTH_FIRST) && pii_at(x, e) == ' ' && is_cap_at(x, e + 1) &&
                  (e2 = word_end(x, e + 1)) > e + 1 && pii_gz_has(GZ_LAST, x->s + e + 1, e2 - e - 1)))
                break;
        }
        starts[k] = i;
        ends[k] = e;
        k++;
        if (pii_at(x, e) != ' ') break;
        i = e + 1;
        if (i >= x->n) {
            pii_at(x, i);
            break;
        }
    }
    return k;
}

/* Is the word (or one of its hyphen-joined parts) in the list? "Edwards-Smith", "Anne-Agathe". */
static bool gz_word_or_part(pii_gz list, const pii_scan *x, size_t a, size_t b) {
    if (pii_gz_has(list, x->s + a, b - a)) return true;
    size_t st = a;
    for (size_t i = a; i <= b; i++) {
        if (i == b || x->s[i] == '-') {
            if (i > st && st > a - 0 && (st != a || i != b) && pii_gz_has(list, x->s + st, i - st)) return true;
            st = i + 1;
        }
    }
    return false;
}

static void scan_person(pii_scan *x, size_t p, size_t we) {
    bool lower_ok, needs_name;
    if (!is_cap_at(x, p) && !pii_gz_has(GZ_FIRST, x->s + p, we - p)) return; /* lower case: only a first name */
    trig t = person_trigger(x, p, &lower_ok, &needs_name);
    bool cap = is_cap_at(x, p);
    if (!cap && t == TRIG_STRONG && !needs_name) lower_ok = true; /* "la cliente daisy Noel" */
    if (!cap && !(t == TRIG_STRONG && lower_ok)) return;
    size_t st[4], en[4];
    int k = name_run(x, p, !cap, st, en);
    if (k == 0) return;
    if (!cap && k > 2) k = 2;
    bool first = gz_word_or_part(GZ_FIRST, x, st[0], en[0]);
    bool last_known = k >= 2 && (gz_word_or_part(GZ_LAST, x, st[k - 1], en[k - 1]) ||
                                 pii_gz_has(GZ_FIRST, x->s + st[k - 1], en[k - 1] - st[k - 1]));
    bool particle = false;
    for (int j = 1; j < k; j++) particle |= !is_cap_at(x, st[j]);
    if (k >= 2 && particle) last_known = true; /* "Elizabeth van Vliet" */
    bool first_is_last = pii_gz_has(GZ_LAST, x->s + st[0], en[0] - st[0]);
    if (!cap) {
        /* lower case: both words known names */
        if (!first || (k == 2 && !last_known)) return;
    }
    if (t == TRIG_STRONG && needs_name) t = TRIG_WEAK;
    if (t != TRIG_STRONG && k >= 2 && pii_gz_has(GZ_CITY_PREFIX, x->s + st[0], en[0] - st[0])) return; /* "Sesto Ruth" */
    bool ok = false;
    if (t == TRIG_STRONG) ok = true;
    else if (t == TRIG_WEAK)
        ok = (first && !(k == 1 && pii_gz_has(GZ_CITY, x->s + st[0], en[0] - st[0]))) || (k >= 2 && last_known) ||
             (k == 1 && first_is_last && false);
    else ok = k >= 2 && first && last_known;
    if (!ok) return;
    /* a company: "Miller Ltd", "Morgan Stanley Group" */
    {
        size_t a = en[k - 1];
        if (pii_at(x, a) == ',') a++;
        if (pii_at(x, a) == ' ') {
            size_t b = a + 1;
            while (b < x->n && !pii_is_space(x->s[b]) && x->s[b] != ',' && b - a < 12) b++;
            if (b == x->n) pii_at(x, b);
            size_t bb = b;
            if (bb > a + 1 && x->s[bb - 1] == '.' && !in_list(COMPANY_WORDS, x->low + a + 1, bb - a - 1)) bb--;
            if (in_list(COMPANY_WORDS, x->low + a + 1, bb - a - 1) && t != TRIG_STRONG) return;
        }
    }
    /* drop a trailing particle */
    while (k > 1 && low_in(x, st[k - 1], en[k - 1], PARTICLES)) k--;
    pii_add(x, p, en[k - 1], SLM_PII_PERSON, t == TRIG_STRONG ? 42 : 40);
}

/* ---------- LOCATION ---------- */

static const char *const LOC_STRONG[] = {
    "lives in", "living in", "live in", "lived in", "based in", "located in", "resides in", "residing in",
    "resident of", "resident in", "home in", "wohnort", "wohnhaft in", "wohnhaft", "wohnt in", "lebt in", "wohne in",
    "ville", "habite à", "habite a", "j'habite à", "domicilié à", "domiciliée à", "résidant à", "résidente à",
    "réside à", "demeurant à", "city", "town", "stadt", "ort", "ciudad", "città", "plaats", "woonplaats",
    "vive en", "vivo en", "reside en", "abita a", "vivo a", "residente a", "woont in", "woon in", "moved to",
    "abito a", "abito in", "vive a", "moro em", "mora em", "vivo em", "vive em", "mieszkam w", "mieszka w",
    "bor i", "bor på", "asun", "asuu", "habito en", "resido en", "domicilio en", "domicilio", "residenza",
    "woonachtig in", "wohnhaft in", "zuhause in", "daheim in", "lebe in", "wohnen in", "leben in",
    "habitant à", "habitante de", "vecino de", "originaire de", "originally from", "grew up in",
    "aufgewachsen in", "stamme aus", "komme aus", "je viens de", "soy de", "sono di", "kom uit",
    "relocated to", "born in", "geboren in", "né à", "née à", "hometown", "place of residence", "residence",
    "localité", "commune", "lieu", "location", "standort", "from the city of", NULL};
/* Labels that name a place only as a form field ("Ort: Celle", "ville : Colas"). */
static const char *const LOC_NEEDS_COLON[] = {"city", "town", "stadt", "ort", "ville", "lieu", "location", "commune",
                                              "standort", "residence", "ciudad", "città", "plaats", "localité",
                                              "wohnhaft", NULL};
static const char *const LOC_WEAK[] = {"from", "in", "aus", "near", "at", "à", "nach", "bei",
                                       "to", "visiting", "visited", "visit", "trip to", "travel to", "flight to",
                                       "flew to", "drove to", "arrived in", "staying in", "stay in", "hotel in",
                                       "office in", "nahe", "in der nähe von", "près de", "vers", "naar", "around", "outside", "von", "depuis", "desde", "da", "uit",
                                       "nahe", "près de", "près", NULL};

static bool city_shaped(pii_scan *x, const size_t *st, const size_t *en, int k) {
    if (k >= 2 && pii_gz_has(GZ_CITY_PREFIX, x->s + st[0], en[0] - st[0])) return true;
    /* a suffix ("Smithburgh", "Lake Dominictown", "Gimenez-sur-Mer") */
    size_t w0 = st[k - 1], w1 = en[k - 1];
    char buf[64];
    size_t len = pii_fold(x->s + w0, w1 - w0, buf, sizeof buf);
    if (!len) return false;
    for (size_t cut = 2; cut + 2 < len; cut++) {
        if ((buf[cut] & 0xC0) == 0x80) continue;
        if (pii_gz_has(GZ_CITY_SUFFIX, (const unsigned char *)buf + cut, len - cut)) return true;
    }
    return false;
}

static bool after_ip(const pii_scan *x, size_t e) {
    /* "... from 198.51.100.7 (City)", "IP-Adresse 1.2.3.4 aus City" */
    size_t i = e;
    while (i > 0 && e - i < 8 && x->s[i - 1] == ' ') i--;
    size_t j = i;
    int dots = 0, colons = 0;
    while (j > 0 && (pii_is_hex(x->s[j - 1]) || x->s[j - 1] == '.' || x->s[j - 1] == ':') && i - j < 45) {
        dots += x->s[j - 1] == '.';
        colons += x->s[j - 1] == ':';
        j--;
    }
    return i > j && (dots == 3 || colons >= 2);
}

static void scan_location(pii_scan *x, size_t p) {
    if (!is_cap_at(x, p)) return;
    bool nl;
    size_t e = skip_back_punct(x, p, &nl);
    size_t before_aus = e;
    const char *which = NULL;
    size_t wl = 0;
    trig t = TRIG_NONE;
    if (ends_with_phrase(x, e, LOC_STRONG, &which, &wl) != (size_t)-1) t = TRIG_STRONG;
    else if (e > 0 && x->s[e - 1] == '(' ) t = after_ip(x, e - 1) ? TRIG_STRONG : TRIG_WEAK;
    else {
        size_t ws = ends_with_phrase(x, e, LOC_WEAK, &which, &wl);
        if (ws != (size_t)-1) t = after_ip(x, ws) ? TRIG_STRONG : TRIG_WEAK;
    }
    (void)before_aus;
    if (p > 0 && x->s[p - 1] == '(' && after_ip(x, p - 1)) t = TRIG_STRONG;
    if (t == TRIG_NONE) return;
    /* strong triggers with a colon need it ("Ort:"), the bare words are ordinary nouns */
    if (t == TRIG_STRONG && which && in_list(LOC_NEEDS_COLON, which, wl)) {
        size_t i = p;
        while (i > 0 && x->s[i - 1] == ' ') i--;
        if (!(i > 0 && x->s[i - 1] == ':')) t = TRIG_WEAK;
    }
    size_t st[4], en[4];
    int k = 0;
    size_t i = p;
    while (k < 4) {
        if (!is_cap_at(x, i)) {
            if (k > 0 && pii_is_lower(x->s[i])) {
                size_t we = word_end(x, i);
                if (low_in(x, i, we, LOC_PART) && pii_at(x, we) == ' ' && is_cap_at(x, we + 1)) {
                    st[k] = i;
                    en[k] = we;
                    k++;
                    i = we + 1;
                    continue;
                }
            }
            break;
        }
        size_t we = word_end(x, i);
        if (we == i) break;
        bool digit = false;
        for (size_t j = i; j < we; j++) digit |= pii_is_digit(x->s[j]);
        if (digit) break;
        if (k > 0 && not_name(x, i, we) && !pii_gz_has(GZ_CITY_PREFIX, x->s + i, we - i)) break;
        bool article = k == 0 && low_in(x, i, we, ARTICLE) && pii_at(x, we) == ' ' && is_cap_at(x, we + 1);
        if (k == 0 && !article && not_name(x, i, we) && !pii_gz_has(GZ_CITY_PREFIX, x->s + i, we - i) &&
            !pii_gz_has(GZ_CITY, x->s + i, we - i))
            return;
        st[k] = i;
        en[k] = we;
        k++;
        if (pii_at(x, we) != ' ') break;
        i = we + 1;
        if (i >= x->n) {
            pii_at(x, i);
            break;
        }
    }
    if (k == 0) return;
    /* the longest prefix of the run that is a known city, for weak triggers */
    int best = 0;
    for (int m = k; m >= 1; m--) {
        if (pii_gz_has(GZ_CITY, x->s + st[0], en[m - 1] - st[0]) || city_shaped(x, st, en, m)) {
            best = m;
            break;
        }
    }
    if (t == TRIG_WEAK) {
        if (!best) return;
        if (!person_anchor_before(x, p)) return;
        /* "from Michelle Lee", "à Martin Couturier": a first name followed by another name is a person */
        if (k >= 2 && pii_gz_has(GZ_FIRST, x->s + st[0], en[0] - st[0]) &&
            !pii_gz_has(GZ_CITY_PREFIX, x->s + st[0], en[0] - st[0]) &&
            !pii_gz_has(GZ_CITY, x->s + st[0], en[1] - st[0]))
            return;
        k = best;
    } else {
        if (k > 3) k = best ? best : 3;
    }
    while (k > 1 && low_in(x, st[k - 1], en[k - 1], LOC_PART))
        k--;
    pii_add(x, p, en[k - 1], SLM_PII_LOCATION, t == TRIG_STRONG ? 50 : 45);
}

/* ---------- ADDRESS ---------- */

static const char *const UNIT_WORDS[] = {"apt", "apt.", "apartment", "suite", "ste", "ste.", "unit", "flat",
                                         "studio", "box", "po", "p.o.", "bldg", "building", "floor", "fl", "room",
                                         "rm", "no", "no.", "nr", "nr.", "n°", "bis", "ter", "etage", "étage",
                                         "bâtiment", "bat", "appt", "appartement", "wohnung", "whg", "og", "eg",
                                         "piso", "puerta", "scala", "interno", "psc", "cmr", "unit", "usns", "usnv",
                                         "uss", "uscgc", "apo", "fpo", "dpo", "c/o", NULL};
static const char *const ADDR_START[] = {"flat", "studio", "unit", "apartment", "apt", "suite", "psc", "cmr",
                                         "usns", "usnv", "uss", "uscgc", "po box", "p.o. box", NULL};
static const char *const ADDR_PART[] = {"de", "du", "des", "la", "le", "les", "d'", "l'", "von", "van", "am", "an",
                                        "der", "den", "im", "in", "sur", "sous", "en", "of", "the", "upon", "on",
                                        "bei", "del", "della", "di", "da", "do", "dos", "das", "y", "et", "und",
                                        "and", "aan", "op", "het", "ob", "vor", "zum", "zur", NULL};
static const char *const STREET_SUFFIX_DE[] = {"straße", "strasse", "str.", "weg", "gasse", "platz", "ring",
                                               "allee", "damm", "ufer", "chaussee", "steig", "pfad", "markt", "hof",
                                               "straat", "laan", "plein", "gracht", "kade", "dijk", "singel",
                                               "steeg", "gatan", "vägen", "gade", "vej", "veien", "gata", "tie",
                                               "katu", "utca", "ulica", "berg", "graben", "wall", "brücke",
                                               "park", "feld", "garten", "stieg", "twiete", "kamp", "höhe",
                                               "siedlung", "boulevard", "kaai", "pad", "hof", "eggen", "veien", "vegen", "gaten",
                                               "torget", "stræde", "allé", "vænget", NULL};

/* Street suffixes by their last byte, so a word is compared with the few that can match. */
static const char *suffix_by_last[256][8];

static bool ends_with_street_suffix(const pii_scan *x, size_t a, size_t b) {
    if (b - a < 5) return false;
    const char *const *cands = suffix_by_last[(unsigned char)x->low[b - 1]];
    if (!cands[0]) return false;
    char buf[64];
    size_t len = pii_fold(x->s + a, b - a, buf, sizeof buf);
    if (!len) return false;
    for (int i = 0; i < 8 && cands[i]; i++) {
        size_t k = strlen(cands[i]);
        if (len > k + 1 && memcmp(buf + len - k, cands[i], k) == 0) return true;
    }
    return false;
}

typedef enum { TOK_END, TOK_NUM, TOK_CAP, TOK_STREET, TOK_PART, TOK_UNIT, TOK_CAPS, TOK_OTHER } addr_tok;

/* Classifies the token at i (end in *e): a house number/postcode, a capitalised word, a street word,
 * a particle, a unit word, an all-capitals code. */
static addr_tok addr_token(pii_scan *x, size_t i, size_t *e) {
    unsigned c = pii_at(x, i);
    if (!c) return TOK_END;
    if (pii_is_digit(c)) {
        size_t j = i;
        while (pii_is_digit(pii_at(x, j))) j++;
        if (j - i > 6) return TOK_OTHER;
        /* 12a, 6/4, 12-14 */
        if ((pii_at(x, j) == '/' || pii_at(x, j) == '-') && pii_is_digit(pii_at(x, j + 1))) {
            j++;
            while (pii_is_digit(pii_at(x, j))) j++;
        }
        if (pii_is_alpha(pii_at(x, j)) && !pii_is_alpha(pii_at(x, j + 1))) j++;
        else if (j - i == 4 && pii_is_upper(pii_at(x, j)) && pii_is_upper(pii_at(x, j + 1)) &&
                 !pii_is_word_at(x->s, x->n, j + 2))
            j += 2; /* Dutch postcode "9146TN" */
        if (pii_is_word_at(x->s, x->n, j)) return TOK_OTHER;
        *e = j;
        return TOK_NUM;
    }
    size_t j = word_end(x, i);
    if (j == i) {
        if (c == 'n' || c == 'N') return TOK_OTHER;
        return TOK_OTHER;
    }
    size_t je = j;
    bool dot = pii_at(x, j) == '.' ;
    bool all_caps = true, digits = false;
    for (size_t k = i; k < j; k++) {
        if (pii_is_lower(x->s[k]) || x->s[k] >= 0x80) all_caps = false;
        if (pii_is_digit(x->s[k])) digits = true;
    }
    if (dot && (low_in(x, i, j + 1, UNIT_WORDS) || low_in(x, i, j + 1, STREET_SUFFIX_DE) ||
                pii_gz_has(GZ_STREET, x->s + i, j + 1 - i)))
        je = j + 1;
    *e = je;
    if (low_in(x, i, je, UNIT_WORDS) || low_in(x, i, j, UNIT_WORDS)) return TOK_UNIT;
    if (dot && low_in(x, i, j + 1, STREET_OPEN)) {
        *e = j + 1;
        return TOK_STREET;
    }
    if (low_in(x, i, j, STREET_OPEN)) return TOK_STREET;
    if (digits) {
        /* UK postcode halves and codes like "PA9W" */
        if (all_caps && j - i <= 4) return TOK_CAPS;
        return TOK_OTHER;
    }
    if (all_caps && j - i >= 2 && j - i <= 5) return TOK_CAPS;
    if (pii_gz_has(GZ_STREET, x->s + i, je - i) || pii_gz_has(GZ_STREET, x->s + i, j - i)) return TOK_STREET;
    if (is_cap_at(x, i)) return ends_with_street_suffix(x, i, j) ? TOK_STREET : TOK_CAP;
    if (low_in(x, i, j, ADDR_PART)) return TOK_PART;
    if (ends_with_street_suffix(x, i, j)) return TOK_STREET;
    return TOK_OTHER;
}

static bool uk_postcode(const pii_scan *x, size_t a, size_t b, size_t c, size_t d) {
    /* outward [A-Z]{1,2}[0-9][A-Z0-9]? inward [0-9][A-Z]{2} */
    size_t n1 = b - a;
    if (n1 < 2 || n1 > 4 || d - c != 3) return false;
    const unsigned char *s = x->s;
    size_t i = a;
    if (!pii_is_upper(s[i])) return false;
    i++;
    if (pii_is_upper(s[i])) i++;
    if (i >= b || !pii_is_digit(s[i])) return false;
    i++;
    if (i < b && !(pii_is_upper(s[i]) || pii_is_digit(s[i]))) return false;
    if (i < b) i++;
    if (i != b) return false;
    return pii_is_digit(s[c]) && pii_is_upper(s[c + 1]) && pii_is_upper(s[c + 2]);
}

/* A town after a postcode: capitalised words with particles; returns its end or 0. */
static size_t town_after(pii_scan *x, size_t i) {
    size_t end = 0;
    int words = 0;
    while (words < 5) {
        size_t e;
        addr_tok t = addr_token(x, i, &e);
        if (t == TOK_CAP || t == TOK_STREET || t == TOK_CAPS) {
            if (t == TOK_CAPS && words == 0 && e - i <= 2) return 0; /* a state code, not a town */
            end = e;
            words++;
        } else if (t == TOK_PART && words > 0) {
            size_t e2;
            if (pii_at(x, e) != ' ' || addr_token(x, e + 1, &e2) != TOK_CAP) break;
        } else
            break;
        if (pii_at(x, e) != ' ') break;
        i = e + 1;
    }
    return end;
}

/* An optional ", Country" (or a line break and a country) after an address's end. */
static size_t country_after(pii_scan *x, size_t e) {
    size_t i = e;
    if (pii_at(x, i) == ',') i++;
    if (pii_at(x, i) == ' ' || pii_at(x, i) == '\n') i++;
    else return e;
    if (!is_cap_at(x, i)) return e;
    size_t best = e;
    size_t j = i;
    for (int w = 0; w < 4; w++) {
        size_t we = word_end(x, j);
        if (we == j) break;
        if (pii_gz_has(GZ_COUNTRY, x->s + i, we - i)) best = we;
        if (low_in(x, i, we, MORE)) best = we;
        if (pii_at(x, we) != ' ') break;
        j = we + 1;
    }
    return best;
}

/* A European postcode at i: 5 or 4 digits, "27 597", "1234 AB", "8015-349", "01-075", "123 45";
 * returns its end or 0. */
static size_t postcode_at(pii_scan *x, size_t i) {
    size_t e = i;
    while (pii_is_digit(pii_at(x, e)) && e - i < 6) e++;
    size_t n = e - i;
    if (n == 0) return 0;
    if (pii_is_alpha(pii_at(x, e)) && !(n == 4 && pii_is_upper(pii_at(x, e)) && pii_is_upper(pii_at(x, e + 1)) &&
                                        !pii_is_word_at(x->s, x->n, e + 2)))
        return 0;
    if (n == 5 || n == 4) {
        if (n == 4 && pii_at(x, e) == '-' && pii_is_digit(pii_at(x, e + 1))) {
            size_t f = e + 1;
            while (pii_is_digit(pii_at(x, f))) f++;
            return f - e - 1 == 3 ? f : 0;
        }
        if (n == 4 && pii_at(x, e) == ' ' && pii_is_upper(pii_at(x, e + 1)) && pii_is_upper(pii_at(x, e + 2)) &&
            !pii_is_word_at(x->s, x->n, e + 3))
            return e + 3;
        if (n == 4 && pii_is_upper(pii_at(x, e)) && pii_is_upper(pii_at(x, e + 1)) && !pii_is_word_at(x->s, x->n, e + 2))
            return e + 2; /* "9146TN" */
        return pii_is_digit(pii_at(x, e + 1)) && pii_at(x, e) == '.' ? 0 : e;
    }
    if (n == 2 && pii_at(x, e) == '-' ) {
        size_t f = e + 1;
        while (pii_is_digit(pii_at(x, f))) f++;
        return f - e - 1 == 3 && !pii_is_word_at(x->s, x->n, f) ? f : 0;
    }
    if ((n == 2 || n == 3) && pii_at(x, e) == ' ' && pii_is_digit(pii_at(x, e + 1))) {
        size_t f = e + 1;
        while (pii_is_digit(pii_at(x, f))) f++;
        if (n == 2 && f - e - 1 == 3 && !pii_is_word_at(x->s, x->n, f)) return f;
        if (n == 3 && f - e - 1 == 2 && !pii_is_word_at(x->s, x->n, f)) return f;
    }
    return 0;
}

/* A Canadian postcode "A1A 1A1" / "A1A1A1" at i; its end or 0. */
static size_t ca_postcode_at(pii_scan *x, size_t i) {
    if (!(pii_is_upper(pii_at(x, i)) && pii_is_digit(pii_at(x, i + 1)) && pii_is_upper(pii_at(x, i + 2)))) return 0;
    size_t j = i + 3;
    if (pii_at(x, j) == ' ') j++;
    if (!(pii_is_digit(pii_at(x, j)) && pii_is_upper(pii_at(x, j + 1)) && pii_is_digit(pii_at(x, j + 2)))) return 0;
    if (pii_is_word_at(x->s, x->n, j + 3)) return 0;
    return j + 3;
}

/* An Italian province code after a town: " (MB)". */
static size_t province_after(pii_scan *x, size_t e) {
    if (pii_at(x, e) == ' ' && pii_at(x, e + 1) == '(' && pii_is_upper(pii_at(x, e + 2)) &&
        pii_is_upper(pii_at(x, e + 3)) && pii_at(x, e + 4) == ')')
        return e + 5;
    return e;
}

/* Parses an address from p; adds it when it reaches a postcode anchor. */
/* What the parse saw of the first segments, for an address without a postcode. */
typedef struct {
    size_t seg0_end, seg1_end;
    int seg0_tokens, seg1_tokens;
    bool seg0_street_last, seg0_num_first, seg1_caps_only;
    int seg_reached;
} addr_state;

static void scan_address_core(pii_scan *x, size_t p, addr_state *as);

/* Parses an address from p; without a postcode, a house number with a street ("221B Baker
 * Street", "Hauptstraße 5") and an optional town segment still count. */
static void scan_address(pii_scan *x, size_t p) {
    addr_state as = {0};
    as.seg1_caps_only = true;
    size_t before = x->nc;
    scan_address_core(x, p, &as);
    if (x->nc > before) return;
    bool street = (as.seg0_num_first && as.seg0_street_last && as.seg0_tokens >= 3) ||
                  (!as.seg0_num_first && as.seg0_street_last == false && as.seg0_tokens == 2 && as.seg0_end);
    if (!street || !as.seg0_end) return;
    size_t end = as.seg0_end;
    if (as.seg_reached >= 1 && as.seg1_end && as.seg1_caps_only && as.seg1_tokens >= 1 && as.seg1_tokens <= 3)
        end = as.seg1_end;
    pii_add(x, p, end, SLM_PII_ADDRESS, 52);
}

static void scan_address_core(pii_scan *x, size_t p, addr_state *as) {
    size_t i = p;
    int seg = 0, seg_tokens = 0, tokens = 0;
    bool street_seen = false, num_seen = false, need_number = false;
    size_t e;
    addr_tok t0 = addr_token(x, p, &e);
    if (t0 == TOK_NUM) {
        /* a house number followed by a street (or "12, rue ...") */
        if (e - p > 6) return;
    } else if (t0 == TOK_UNIT) {
        if (!low_in(x, p, e, ADDR_START) && !(e > p && low_in(x, p, e - (x->s[e - 1] == '.'), ADDR_START))) return;
    } else if (t0 == TOK_STREET) {
        /* "rue ...", "Hauptstraße 5", "Calle Mayor 3"; a capitalised street word alone ("Ring",
         * "Lane": also surnames) needs a house number in its segment */
        if (is_cap_at(x, p) && !ends_with_street_suffix(x, p, e) && !low_in(x, p, e, STREET_OPEN)) need_number = true;
    } else
        return;
    size_t limit = p + 200;
    while (i < limit) {
        addr_tok t = addr_token(x, i, &e);
        if (t == TOK_END || t == TOK_OTHER) return;
        /* anchors at a segment start (after the street part) */
        if (seg >= 1 && seg_tokens == 0 && (street_seen || num_seen)) {
            size_t e2, e3;
            /* US: "ST 12345" / military "APO AE 12345" */
            if ((t == TOK_CAPS || t == TOK_UNIT) && e - i == 2 && pii_is_upper(x->s[i]) && pii_is_upper(x->s[i + 1]) &&
                pii_at(x, e) == ' ' && addr_token(x, e + 1, &e2) == TOK_NUM &&
                e2 - (e + 1) == 5 && all_digits(x, e + 1, e2)) {
                size_t end = e2;
                if (pii_at(x, end) == '-' && end + 5 <= x->n && all_digits(x, end + 1, end + 5)) end += 5;
                if (pii_is_word_at(x->s, x->n, end)) return;
                pii_add(x, p, country_after(x, end), SLM_PII_ADDRESS, 55);
                return;
            }
            if (t == TOK_UNIT && e - i == 3 && pii_at(x, e) == ' ' && addr_token(x, e + 1, &e2) == TOK_CAPS &&
                e2 - e - 1 == 2 && pii_at(x, e2) == ' ' && addr_token(x, e2 + 1, &e3) == TOK_NUM && e3 - e2 - 1 == 5) {
                pii_add(x, p, e3, SLM_PII_ADDRESS, 55);
                return;
            }
            /* European: "12345 Town", "27 597 Town", "1234 AB Town", "1010 Wien", "8015-349 Setúbal",
             * "01-075 Koło", "123 45 Stad"; a town may follow on the next line */
            size_t pc = postcode_at(x, i);
            if (pc) {
                unsigned sep = pii_at(x, pc);
                size_t ts = pc + 1;
                if (sep == ',' && pii_at(x, pc + 1) == ' ') { /* "9857 WZ, Driehuis" */
                    sep = ' ';
                    ts = pc + 2;
                }
                if (sep == ' ' || sep == '\n') {
                    size_t town = town_after(x, ts);
                    if (town) {
                        pii_add(x, p, country_after(x, province_after(x, town)), SLM_PII_ADDRESS, 55);
                        return;
                    }
                }
                /* "Huelva, 19874": a postcode closing the address */
                if (seg >= 2 && !pii_is_word_at(x->s, x->n, pc) && (sep != ',' || !pii_is_alpha(pii_at(x, pc + 2))) &&
                    e - i == 5) {
                    pii_add(x, p, pc, SLM_PII_ADDRESS, 55);
                    return;
                }
            }
            /* Canada "BC C2K 3G5", Australia "VIC, 2971" / "WA 6000" */
            if (pii_is_upper(x->s[i]) && e - i >= 2 && e - i <= 3) {
                bool caps = true;
                for (size_t k2 = i; k2 < e; k2++) caps &= pii_is_upper(x->s[k2]);
                size_t q = e;
                if (caps && pii_at(x, q) == ',') q++;
                if (caps && pii_at(x, q) == ' ') {
                    q++;
                    size_t ca = ca_postcode_at(x, q);
                    if (ca) {
                        pii_add(x, p, country_after(x, ca), SLM_PII_ADDRESS, 55);
                        return;
                    }
                    if (pii_is_digit(pii_at(x, q)) && addr_token(x, q, &e2) == TOK_NUM && e2 - q == 4 &&
                        all_digits(x, q, e2) && !pii_is_word_at(x->s, x->n, e2)) {
                        pii_add(x, p, country_after(x, e2), SLM_PII_ADDRESS, 55);
                        return;
                    }
                }
            }
        }
        /* UK postcode: "SW1A 1AA", "L0 4QU" */
        if (seg >= 1 && (street_seen || num_seen) && pii_is_upper(x->s[i])) {
            size_t a = i;
            while (a - i < 5 && (pii_is_upper(pii_at(x, a)) || pii_is_digit(pii_at(x, a)))) a++;
            if (pii_at(x, a) == ' ' && pii_is_digit(pii_at(x, a + 1)) && pii_is_upper(pii_at(x, a + 2)) &&
                pii_is_upper(pii_at(x, a + 3)) && !pii_is_word_at(x->s, x->n, a + 4) && a + 4 <= x->n &&
                uk_postcode(x, i, a, a + 1, a + 4)) {
                pii_add(x, p, country_after(x, a + 4), SLM_PII_ADDRESS, 55);
                return;
            }
        }
        if (t == TOK_NUM) num_seen = true;
        if (t == TOK_STREET || t == TOK_UNIT) street_seen = true;
        if (t == TOK_PART && seg_tokens == 0 && seg > 0) return;
        tokens++;
        seg_tokens++;
        if (tokens > 18) return;
        if (seg == 0 && t != TOK_PART) {
            as->seg0_end = e;
            as->seg0_tokens = seg_tokens;
            as->seg0_num_first = t0 == TOK_NUM;
            as->seg0_street_last = t == TOK_STREET && seg_tokens >= 3;
            /* "Hauptstraße 5": a compound street name and its number */
            if (t0 == TOK_STREET && seg_tokens == 2 && t == TOK_NUM && ends_with_street_suffix(x, p, word_end(x, p)))
                as->seg0_street_last = false, as->seg0_tokens = 2;
            else if (t0 == TOK_STREET)
                as->seg0_end = as->seg0_tokens == 2 && t == TOK_NUM ? e : 0;
        } else if (seg == 1) {
            as->seg_reached = 1;
            as->seg1_end = e;
            as->seg1_tokens = seg_tokens;
            if (t != TOK_CAP) as->seg1_caps_only = false;
        }
        /* separators: one space inside a segment; ", " or a line break between segments */
        unsigned c = pii_at(x, e);
        if (c == ' ' && pii_at(x, e + 1) == '\n') {
            i = e + 2;
            seg++;
            seg_tokens = 0;
        } else if (c == ' ') {
            i = e + 1;
        } else if (c == ',' && (pii_at(x, e + 1) == ' ' || pii_at(x, e + 1) == '\n')) {
            i = e + 2;
            seg++;
            seg_tokens = 0;
        } else if (c == '\n') {
            i = e + 1;
            seg++;
            seg_tokens = 0;
        } else if (c == '\r' && pii_at(x, e + 1) == '\n') {
            i = e + 2;
            seg++;
            seg_tokens = 0;
        } else
            return;
        if (seg > 5) return;
        /* the first segment must name a street: a number and a word, or a street word */
        if (seg == 1 && seg_tokens == 0 && !street_seen && !(num_seen && tokens >= 2) &&
            !(num_seen && tokens == 1))
            return;
        if (seg == 1 && seg_tokens == 0 && need_number && !num_seen) return;
    }
}

/* ---------- driver ---------- */

void pii_scan_names(pii_scan *x) {
    size_t n = x->n;
    for (size_t p = x->from; p < n; p++) {
        unsigned c = x->s[p];
        if (c < 0x80 && !pii_is_alnum(c)) continue;
        if (p > 0 && pii_is_word_at(x->s, n, p - 1)) continue;
        if (c >= 0x80 && !(c >= 0xC3 && c <= 0xC9)) continue;
        x->attempt = p;
        if (pii_is_digit(c)) {
            scan_address(x, p);
            continue;
        }
        if (p > 0 && (x->s[p - 1] == '-' || x->s[p - 1] == '_' || x->s[p - 1] == '/' || x->s[p - 1] == '@' ||
                      x->s[p - 1] == '.' || x->s[p - 1] == '\''))
            continue;
        size_t we = word_end(x, p);
        if (we > p + 60) continue;
        bool cap = is_cap_at(x, p);
        /* an address opens with a number (above), a unit word ("Flat", "PSC"), a street word
         * ("rue", "Via", "ul.") or a compound street name ("Jesselplatz") */
        size_t wd = pii_at(x, we) == '.' ? we + 1 : we;
        if (in_list(STREET_OPEN, x->low + p, we - p) || in_list(STREET_OPEN, x->low + p, wd - p) ||
            (cap && (in_list(ADDR_START, x->low + p, we - p) || ends_with_street_suffix(x, p, we))))
            scan_address(x, p);
        x->attempt = p;
        if (!(pii_is_alpha(c) || c >= 0xC3)) continue;
        scan_person(x, p, we);
        x->attempt = p;
        if (cap) scan_location(x, p);
    }
}

void pii_names_register_sets(void) {
    for (const char *const *sfx = STREET_SUFFIX_DE; *sfx; sfx++) {
        size_t k = strlen(*sfx);
        const char **slot = suffix_by_last[(unsigned char)(*sfx)[k - 1]];
        for (int i = 0; i < 7; i++)
            if (!slot[i]) {
                slot[i] = *sfx;
                break;
            }
    }
    pii_sets_register_n(pii_gz_first, pii_gz_first_count);
    pii_sets_register_n(pii_gz_last, pii_gz_last_count);
    pii_sets_register_n(pii_gz_city, pii_gz_city_count);
    pii_sets_register_n(pii_gz_city_prefix, pii_gz_city_prefix_count);
    pii_sets_register_n(pii_gz_city_suffix, pii_gz_city_suffix_count);
    pii_sets_register_n(pii_gz_street, pii_gz_street_count);
    pii_sets_register_n(pii_gz_country, pii_gz_country_count);
    pii_sets_register(MONTH_FIRST);
    pii_sets_register(LOC_PART);
    pii_sets_register(ARTICLE);
    pii_sets_register(MORE);
    pii_sets_register(NOT_NAME);
    pii_sets_register(HONORIFIC);
    pii_sets_register(PERSON_STRONG);
    pii_sets_register(PERSON_LOWER_OK);
    pii_sets_register(PERSON_WEAK);
    pii_sets_register(PERSON_STRONG_NEEDS_NAME);
    pii_sets_register(PARTICLES);
    pii_sets_register(STREET_OPEN);
    pii_sets_register(LOC_STRONG);
    pii_sets_register(LOC_NEEDS_COLON);
    pii_sets_register(LOC_WEAK);
    pii_sets_register(UNIT_WORDS);
    pii_sets_register(ADDR_START);
    pii_sets_register(ADDR_PART);
    pii_sets_register(STREET_SUFFIX_DE);
}
