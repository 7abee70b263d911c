package sip

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"hash"
	"strings"
)

// dialogToken is what the proxy writes into its Record-Route URI (as the
// user part) when a dialog is set up: the caller's From tag and both
// parties' flows. In-dialog requests carry it back in their Route header,
// so the proxy knows where to send them without keeping dialog state and
// without trusting the Request-URI (the far party's Contact, which behind
// a NAT is a private address). The token is signed with the server secret
// so that nobody can make the proxy send to an address of their choosing.
type dialogToken struct {
	FromTag string
	Caller  Flow
	Callee  Flow
}

var errBadToken = errors.New("bad dialog token")

// maxTokenLen bounds what decode will look at.
const maxTokenLen = 600

func encodeFlow(f Flow) string {
	return f.Transport + "|" + f.Source + "|" + f.Local
}

func decodeFlow(s string) (Flow, bool) {
	tr, rest, ok1 := strings.Cut(s, "|")
	src, local, ok2 := strings.Cut(rest, "|")
	if !ok1 || !ok2 || src == "" || strings.Contains(local, "|") {
		return Flow{}, false
	}
	switch tr {
	case "udp", "tcp", "tls", "ws":
	default:
		return Flow{}, false
	}
	return Flow{Transport: tr, Source: src, Local: local}, true
}

func (t dialogToken) encode(key []byte) string {
	body := t.FromTag + "\n" + encodeFlow(t.Caller) + "\n" + encodeFlow(t.Callee)
	m := hmac.New(sha256.New, key)
	m.Write([]byte(body))
	return base64.RawURLEncoding.EncodeToString([]byte(body)) + "." +
		base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:12])
}

func decodeDialogToken(s string, key []byte) (dialogToken, error) {
	return decodeDialogTokenWith(s, hmac.New(sha256.New, key))
}

// decodeToken is decodeDialogToken with an HMAC state from the server's
// pool: in-dialog requests decode a token each.
func (srv *Server) decodeToken(s string) (dialogToken, error) {
	st := srv.macs.get()
	t, err := decodeDialogTokenWith(s, st.h)
	srv.macs.put(st)
	return t, err
}

// decodeDialogTokenWith checks and decodes a token with m, an
// HMAC-SHA256 keyed with the server secret (reset here).
func decodeDialogTokenWith(s string, m hash.Hash) (dialogToken, error) {
	var t dialogToken
	if len(s) > maxTokenLen {
		return t, errBadToken
	}
	b64, sig64, ok := strings.Cut(s, ".")
	if !ok {
		return t, errBadToken
	}
	var bodyBuf [maxTokenLen]byte
	n, err := base64.RawURLEncoding.Decode(bodyBuf[:], []byte(b64))
	if err != nil {
		return t, errBadToken
	}
	body := bodyBuf[:n]
	var sigBuf [maxTokenLen]byte
	n, err = base64.RawURLEncoding.Decode(sigBuf[:], []byte(sig64))
	if err != nil || n != 12 {
		return t, errBadToken
	}
	m.Reset()
	m.Write(body)
	var sum [sha256.Size]byte
	if !hmac.Equal(m.Sum(sum[:0])[:12], sigBuf[:12]) {
		return t, errBadToken
	}
	fromTag, rest, ok1 := strings.Cut(string(body), "\n")
	caller, callee, ok2 := strings.Cut(rest, "\n")
	if !ok1 || !ok2 || strings.Contains(callee, "\n") {
		return t, errBadToken
	}
	t.FromTag = fromTag
	if t.Caller, ok = decodeFlow(caller); !ok {
		return t, errBadToken
	}
	if t.Callee, ok = decodeFlow(callee); !ok {
		return t, errBadToken
	}
	return t, nil
}
