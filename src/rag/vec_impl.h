/* ISA-specific dot products of an f32 query with f16 rows (built with their -m flags by CMake). */
#ifndef SLM_RAG_VEC_IMPL_H
#define SLM_RAG_VEC_IMPL_H
#include <stddef.h>
#include <stdint.h>
void rag_dot_f16_avx2(const float *query, const uint16_t *vecs, size_t n, int dim, float *scores);
void rag_dot_f16_avx512(const float *query, const uint16_t *vecs, size_t n, int dim, float *scores);
#endif
