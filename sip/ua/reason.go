package ua

import (
	"strings"
)

// The Reason header (RFC 3326) lets a BYE say why the call ends. A phone
// whose ICE checks failed hangs up with one, so the other phone, whose own
// checks may still be running when the BYE arrives, can report the real
// cause instead of only "remote party hung up".

// reasonCause is the SIP status code our Reason headers carry: the media
// path, not the peer, is unavailable.
const reasonCause = "503"

// maxReasonText bounds the text we send and the text we accept.
const maxReasonText = 200

// reasonHeader formats a Reason header value carrying text.
func reasonHeader(text string) string {
	text = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, text)
	if len(text) > maxReasonText {
		text = text[:maxReasonText]
	}
	text = strings.ToValidUTF8(text, "")
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return `SIP;cause=` + reasonCause + `;text="` + r.Replace(text) + `"`
}

// reasonText returns the text parameter of a Reason header value, or ""
// when it has none. Only the first reason of a comma-separated list is
// read; control characters are dropped and the result is bounded.
func reasonText(v string) string {
	// Byte-wise and case-insensitive: strings.ToLower could change the
	// length of invalid UTF-8 and so the index.
	i := -1
	for j := 0; j+len("text=") <= len(v); j++ {
		if strings.EqualFold(v[j:j+len("text=")], "text=") {
			i = j
			break
		}
	}
	if i < 0 {
		return ""
	}
	v = strings.TrimSpace(v[i+len("text="):])
	var b strings.Builder
	if strings.HasPrefix(v, `"`) {
		esc := false
		for _, r := range v[1:] {
			if esc {
				esc = false
			} else if r == '\\' {
				esc = true
				continue
			} else if r == '"' {
				break
			}
			b.WriteRune(r)
		}
	} else {
		// A token (not quoted): up to the next parameter or reason.
		end := strings.IndexAny(v, ";,")
		if end < 0 {
			end = len(v)
		}
		b.WriteString(v[:end])
	}
	out := strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, strings.ToValidUTF8(b.String(), ""))
	out = strings.TrimSpace(out)
	if len(out) > maxReasonText {
		out = strings.ToValidUTF8(out[:maxReasonText], "")
	}
	return out
}
