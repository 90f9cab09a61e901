/*
 * lex.h: the character classes and spans the rule book's parsers share (pure,
 * header-only, so each parser stays a plain function of its bytes).
 */
#ifndef TS_LEX_H
#define TS_LEX_H

#include <stdbool.h>
#include <stddef.h>

static inline bool lex_digit(char c)
{
    return c >= '0' && c <= '9';
}

static inline bool lex_alnum(char c)
{
    return lex_digit(c) || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

/* A character of an id: letters, digits, '.', '_' and '-'. */
static inline bool lex_id_char(char c)
{
    return lex_alnum(c) || c == '.' || c == '_' || c == '-';
}

/* Number of characters from s (at most len) satisfying pred. */
static inline size_t lex_span(const char *s, size_t len, bool (*pred)(char))
{
    size_t i = 0;
    while (i < len && pred(s[i]))
        i++;
    return i;
}

/* True when s has len > 0 characters, all satisfying pred. */
static inline bool lex_all(const char *s, size_t len, bool (*pred)(char))
{
    return len > 0 && lex_span(s, len, pred) == len;
}

#endif
