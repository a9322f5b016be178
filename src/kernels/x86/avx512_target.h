/*
 * avx512_target.h - the first include of an AVX-512F kernel file: <immintrin.h>, then
 * the rest of the file compiled for avx512f+fma. gcc takes the target pragma; clang
 * ignores it and takes the function attribute pushed here, which the including file
 * pops at its end (`#pragma clang attribute pop`). Only the files that include this are
 * built for the target (never -march=native); select.c and train_select.c call their
 * kernels only when __builtin_cpu_supports says the CPU has AVX-512F.
 *
 * Include it inside `#if defined(__x86_64__) && defined(__GNUC__)`, before any other
 * header, so that the inline helpers those headers define inherit the target.
 */
#ifndef CSPRESNET_AVX512_TARGET_H
#define CSPRESNET_AVX512_TARGET_H

#include <immintrin.h>
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,fma"))), apply_to = function)
#else
#pragma GCC target("avx512f,fma")
#endif

#endif
