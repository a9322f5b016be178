/*
 * pickle_opcodes.c - names and refusals for the pickle interpreter (pickle.c): opcode
 * and object-kind names for messages, the message for every opcode we refuse (unsafe,
 * unsupported or unknown), a guess at what a non-pickle file is, and printable copies
 * of untrusted strings.
 */
#include "io/pickle.h"

#include <stdio.h>
#include <string.h>

const char *pk_op_name(uint8_t op)
{
    switch (op) {
    case '(': return "MARK";
    case '.': return "STOP";
    case '0': return "POP";
    case '1': return "POP_MARK";
    case '2': return "DUP";
    case 'F': return "FLOAT";
    case 'I': return "INT";
    case 'J': return "BININT";
    case 'K': return "BININT1";
    case 'L': return "LONG";
    case 'M': return "BININT2";
    case 'N': return "NONE";
    case 'P': return "PERSID";
    case 'Q': return "BINPERSID";
    case 'R': return "REDUCE";
    case 'S': return "STRING";
    case 'T': return "BINSTRING";
    case 'U': return "SHORT_BINSTRING";
    case 'V': return "UNICODE";
    case 'X': return "BINUNICODE";
    case 'a': return "APPEND";
    case 'b': return "BUILD";
    case 'c': return "GLOBAL";
    case 'd': return "DICT";
    case '}': return "EMPTY_DICT";
    case 'e': return "APPENDS";
    case 'g': return "GET";
    case 'h': return "BINGET";
    case 'i': return "INST";
    case 'j': return "LONG_BINGET";
    case 'l': return "LIST";
    case ']': return "EMPTY_LIST";
    case 'o': return "OBJ";
    case 'p': return "PUT";
    case 'q': return "BINPUT";
    case 'r': return "LONG_BINPUT";
    case 's': return "SETITEM";
    case 't': return "TUPLE";
    case ')': return "EMPTY_TUPLE";
    case 'u': return "SETITEMS";
    case 'G': return "BINFLOAT";
    case 'B': return "BINBYTES";
    case 'C': return "SHORT_BINBYTES";
    case 0x80: return "PROTO";
    case 0x81: return "NEWOBJ";
    case 0x82: return "EXT1";
    case 0x83: return "EXT2";
    case 0x84: return "EXT4";
    case 0x85: return "TUPLE1";
    case 0x86: return "TUPLE2";
    case 0x87: return "TUPLE3";
    case 0x88: return "NEWTRUE";
    case 0x89: return "NEWFALSE";
    case 0x8a: return "LONG1";
    case 0x8b: return "LONG4";
    case 0x8c: return "SHORT_BINUNICODE";
    case 0x8d: return "BINUNICODE8";
    case 0x8e: return "BINBYTES8";
    case 0x8f: return "EMPTY_SET";
    case 0x90: return "ADDITEMS";
    case 0x91: return "FROZENSET";
    case 0x92: return "NEWOBJ_EX";
    case 0x93: return "STACK_GLOBAL";
    case 0x94: return "MEMOIZE";
    case 0x95: return "FRAME";
    case 0x96: return "BYTEARRAY8";
    case 0x97: return "NEXT_BUFFER";
    case 0x98: return "READONLY_BUFFER";
    }
    return NULL;
}

const char *pk_kind_name(pk_kind kind)
{
    switch (kind) {
    case PK_NONE: return "None";
    case PK_BOOL: return "bool";
    case PK_INT: return "int";
    case PK_FLOAT: return "float";
    case PK_STR: return "str";
    case PK_BYTES: return "bytes";
    case PK_TUPLE: return "tuple";
    case PK_LIST: return "list";
    case PK_DICT: return "dict";
    case PK_GLOBAL: return "global";
    case PK_DTYPE: return "numpy.dtype";
    case PK_NDARRAY: return "numpy.ndarray";
    }
    return "object";
}

void pk_printable(const uint8_t *s, size_t n, char *out, size_t out_size)
{
    size_t o = 0;
    if (out_size == 0)
        return;
    for (size_t i = 0; i < n; i++) {
        char tmp[8];
        int k;
        if (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '\\' && s[i] != '\'')
            k = snprintf(tmp, sizeof tmp, "%c", s[i]);
        else
            k = snprintf(tmp, sizeof tmp, "\\x%02x", s[i]);
        if (o + (size_t)k + 4 >= out_size) {  /* room for "..." and NUL */
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        memcpy(out + o, tmp, (size_t)k);
        o += (size_t)k;
    }
    out[o] = '\0';
}

const char *pk_not_a_pickle_hint(const uint8_t *d, size_t n)
{
    if (n >= 4 && memcmp(d, "\x89PNG", 4) == 0)
        return " (looks like a PNG image)";
    if (n >= 4 && memcmp(d, "PK\x03\x04", 4) == 0)
        return " (looks like a zip archive, e.g. a PyTorch .pt file or .npz)";
    if (n >= 6 && memcmp(d, "\x93NUMPY", 6) == 0)
        return " (looks like a .npy file)";
    if (n >= 2 && d[0] == 0x1f && d[1] == 0x8b)
        return " (looks like gzip data)";
    if (n >= 3 && d[0] == 0xff && d[1] == 0xd8 && d[2] == 0xff)
        return " (looks like a JPEG image)";
    size_t k = n < 64 ? n : 64, text = 0;
    for (size_t i = 0; i < k; i++)
        text += (d[i] >= 0x20 && d[i] < 0x7f) || d[i] == '\n' || d[i] == '\r' || d[i] == '\t';
    if (k && text == k)
        return " (looks like text)";
    return " (protocol 0 and 1 pickles are not supported either)";
}

cspresnet_status pk_refuse(pk_unpickler *u)
{
    const char *name = pk_op_name(u->op);
    switch (u->op) {
    case 'P': case 'Q':
        return pk_fail(u, CSPRESNET_ERR_UNSAFE,
                       "opcode %s (0x%02x) at offset %zu asks for a persistent object; refused",
                       name, u->op, u->op_offset);
    case 'i': case 'o': case 0x81: case 0x92:
        return pk_fail(u, CSPRESNET_ERR_UNSAFE,
                       "opcode %s (0x%02x) at offset %zu would create an instance of an "
                       "arbitrary class; refused", name, u->op, u->op_offset);
    case 0x82: case 0x83: case 0x84:
        return pk_fail(u, CSPRESNET_ERR_UNSAFE,
                       "opcode %s (0x%02x) at offset %zu looks up the copyreg extension "
                       "registry; refused", name, u->op, u->op_offset);
    case 'F': case 'I': case 'L': case 'S': case 'V': case 'g': case 'p':
        return pk_fail(u, CSPRESNET_ERR_UNSUPPORTED,
                       "protocol 0 text opcode %s (0x%02x) at offset %zu is not supported",
                       name, u->op, u->op_offset);
    case 'T': case 'U':
        return pk_fail(u, CSPRESNET_ERR_UNSUPPORTED,
                       "opcode %s (0x%02x, a Python 2 str) at offset %zu is not supported",
                       name, u->op, u->op_offset);
    case 0x8f: case 0x90: case 0x91:
        return pk_fail(u, CSPRESNET_ERR_UNSUPPORTED,
                       "opcode %s (0x%02x, a set) at offset %zu is not supported", name, u->op,
                       u->op_offset);
    case 0x97: case 0x98:
        return pk_fail(u, CSPRESNET_ERR_UNSUPPORTED,
                       "opcode %s (0x%02x, an out-of-band buffer) at offset %zu is not "
                       "supported", name, u->op, u->op_offset);
    }
    return pk_fail(u, CSPRESNET_ERR_FORMAT, "unknown opcode 0x%02x at offset %zu", u->op,
                   u->op_offset);
}

