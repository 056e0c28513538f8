// Package jsontext writes JSON text by hand where encoding/json's
// reflection costs too much per row (exports, every stored record's extra).
package jsontext

import (
	"slices"
	"strings"
	"unicode/utf8"
)

const hexDigits = "0123456789abcdef"

// AppendString appends s quoted as encoding/json does without HTML
// escaping: \" \\ \n \r \t, other controls and U+2028/U+2029 as \u00XX,
// invalid UTF-8 as \ufffd.
func AppendString[S string | []byte](b []byte, s S) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		// At most 4 bytes converted: no allocation, whichever S is.
		r, size := utf8.DecodeRuneInString(string(s[i:min(i+utf8.UTFMax, len(s))]))
		if r == utf8.RuneError && size == 1 {
			b = append(append(b, s[start:i]...), `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(append(b, s[start:i]...), '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	return append(append(b, s[start:]...), '"')
}

// AppendStringMap appends m as a JSON object, keys sorted by their bytes as
// encoding/json sorts them, strings quoted as AppendString does.
func AppendStringMap(b []byte, m map[string]string) []byte {
	// Pairs, not keys: no second lookup of each key (this runs for every
	// record forwarded or exported).
	var room [32]member
	members := room[:0]
	for k, v := range m {
		members = append(members, member{k, v})
	}
	slices.SortFunc(members, func(x, y member) int { return strings.Compare(x.k, y.k) })
	b = append(b, '{')
	for i, kv := range members {
		if i > 0 {
			b = append(b, ',')
		}
		b = AppendString(append(AppendString(b, kv.k), ':'), kv.v)
	}
	return append(b, '}')
}

type member struct{ k, v string }

// ParseStringMap parses a JSON object of string values, as json.Unmarshal
// into a map[string]string would, for the common case only: keys and values
// without escapes or invalid UTF-8, any JSON whitespace. ok is false for
// anything else, which the caller then hands to encoding/json; reading
// every stored record's extra this way costs a fraction of reflection.
func ParseStringMap(s string) (m map[string]string, ok bool) {
	i := skipSpace(s, 0)
	if i == len(s) || s[i] != '{' {
		return nil, false
	}
	m = make(map[string]string, 16)
	if i = skipSpace(s, i+1); i < len(s) && s[i] == '}' {
		return m, skipSpace(s, i+1) == len(s)
	}
	for {
		var k, v string
		if k, i, ok = plainString(s, i); !ok {
			return nil, false
		}
		if i = skipSpace(s, i); i == len(s) || s[i] != ':' {
			return nil, false
		}
		if v, i, ok = plainString(s, skipSpace(s, i+1)); !ok {
			return nil, false
		}
		m[k] = v
		if i = skipSpace(s, i); i == len(s) {
			return nil, false
		}
		switch s[i] {
		case ',':
			i = skipSpace(s, i+1)
		case '}':
			return m, skipSpace(s, i+1) == len(s)
		default:
			return nil, false
		}
	}
}

func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
		i++
	}
	return i
}

// plainString reads the string at s[i], which must hold no escape, control
// character or invalid UTF-8, and returns it and the index after it.
func plainString(s string, i int) (string, int, bool) {
	if i >= len(s) || s[i] != '"' {
		return "", i, false
	}
	for j := i + 1; j < len(s); j++ {
		switch c := s[j]; {
		case c == '"':
			v := s[i+1 : j]
			return v, j + 1, utf8.ValidString(v)
		case c == '\\' || c < 0x20:
			return "", i, false
		}
	}
	return "", i, false
}
