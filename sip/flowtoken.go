package sip

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
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
	parts := strings.Split(s, "|")
	if len(parts) != 3 || parts[1] == "" {
		return Flow{}, false
	}
	switch parts[0] {
	case "udp", "tcp", "tls", "ws":
	default:
		return Flow{}, false
	}
	return Flow{Transport: parts[0], Source: parts[1], Local: parts[2]}, true
}

func (t dialogToken) encode(key []byte) string {
	body := t.FromTag + "\n" + encodeFlow(t.Caller) + "\n" + encodeFlow(t.Callee)
	m := hmac.New(sha256.New, key)
	m.Write([]byte(body))
	return base64.RawURLEncoding.EncodeToString([]byte(body)) + "." +
		base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:12])
}

func decodeDialogToken(s string, key []byte) (dialogToken, error) {
	var t dialogToken
	if len(s) > maxTokenLen {
		return t, errBadToken
	}
	b64, sig64, ok := strings.Cut(s, ".")
	if !ok {
		return t, errBadToken
	}
	body, err := base64.RawURLEncoding.DecodeString(b64)
	if err != nil {
		return t, errBadToken
	}
	sig, err := base64.RawURLEncoding.DecodeString(sig64)
	if err != nil || len(sig) != 12 {
		return t, errBadToken
	}
	m := hmac.New(sha256.New, key)
	m.Write(body)
	if !hmac.Equal(m.Sum(nil)[:12], sig) {
		return t, errBadToken
	}
	parts := strings.Split(string(body), "\n")
	if len(parts) != 3 {
		return t, errBadToken
	}
	t.FromTag = parts[0]
	if t.Caller, ok = decodeFlow(parts[1]); !ok {
		return t, errBadToken
	}
	if t.Callee, ok = decodeFlow(parts[2]); !ok {
		return t, errBadToken
	}
	return t, nil
}
