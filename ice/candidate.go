package ice

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	pice "github.com/pion/ice/v4"
)

// Candidate is a parsed a=candidate value (RFC 8839 §5.1).
type Candidate struct {
	Foundation string
	Component  uint16
	// Protocol is "udp" or "tcp".
	Protocol string
	Priority uint32
	// Address is an IP address or, for browsers' mDNS candidates, a
	// "<uuid>.local" name.
	Address string
	Port    int
	// Type is "host", "srflx", "prflx" or "relay".
	Type string
	// RelatedAddress and RelatedPort are raddr/rport, if present.
	RelatedAddress string
	RelatedPort    int
}

// maxCandidateLen bounds what we hand to the parser; real lines are well
// under 300 bytes.
const maxCandidateLen = 1024

func parsePionCandidate(raw string) (pice.Candidate, error) {
	raw = strings.TrimSpace(raw)
	raw = strings.TrimPrefix(raw, "a=")
	if len(raw) > maxCandidateLen {
		return nil, fmt.Errorf("%w: %d bytes", ErrBadCandidate, len(raw))
	}
	c, err := pice.UnmarshalCandidate(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCandidate, err)
	}
	return c, nil
}

// ParseCandidate parses an a=candidate value, with or without the
// "candidate:" (or "a=candidate:") prefix.
func ParseCandidate(raw string) (Candidate, error) {
	c, err := parsePionCandidate(raw)
	if err != nil {
		return Candidate{}, err
	}
	out := Candidate{
		Foundation: strings.TrimSpace(c.Foundation()),
		Component:  c.Component(),
		Protocol:   c.NetworkType().NetworkShort(),
		Priority:   c.Priority(),
		Address:    c.Address(),
		Port:       c.Port(),
		Type:       c.Type().String(),
	}
	// Like pion's writer, treat a related address without a port
	// (browsers hide it as "raddr 0.0.0.0 rport 0") as absent.
	if r := c.RelatedAddress(); r != nil && r.Address != "" && r.Port != 0 {
		out.RelatedAddress, out.RelatedPort = r.Address, r.Port
	}
	return out, nil
}

// MarshalCandidate normalises an a=candidate value through pion's parser
// and writer: the result is the attribute value without "candidate:".
func MarshalCandidate(raw string) (string, error) {
	c, err := parsePionCandidate(raw)
	if err != nil {
		return "", err
	}
	return c.Marshal(), nil
}

// AddrPort returns the candidate's address as an IP and port; ok is false
// for mDNS names.
func (c Candidate) AddrPort() (netip.AddrPort, bool) {
	ip, err := netip.ParseAddr(c.Address)
	if err != nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(c.Port)), true
}

// typeRank orders candidate types for the default candidate (RFC 8445
// §5.1.4: relayed, then server-reflexive, then host).
func typeRank(t string) int {
	switch t {
	case "relay":
		return 3
	case "srflx":
		return 2
	case "prflx":
		return 1
	}
	return 0
}

// DefaultCandidate picks the candidate to put in c= and m= (RFC 8839,
// RFC 8445 §5.1.4): of the UDP component-1 candidates with an IP address,
// a relayed one if any, else server-reflexive, else host; within a type
// the highest priority. A peer that does not do ICE sends media there,
// and a relayed or server-reflexive address is the one it can most likely
// reach. ok is false when no candidate qualifies.
func DefaultCandidate(candidates []string) (c Candidate, ok bool) {
	for _, raw := range candidates {
		cand, err := ParseCandidate(raw)
		if err != nil || cand.Component != 1 || cand.Protocol != "udp" {
			continue
		}
		if _, isIP := cand.AddrPort(); !isIP {
			continue
		}
		if !ok || typeRank(cand.Type) > typeRank(c.Type) ||
			(typeRank(cand.Type) == typeRank(c.Type) && cand.Priority > c.Priority) {
			c, ok = cand, true
		}
	}
	return c, ok
}

// sortCandidates orders local candidates by priority, highest first, so
// SDP lists them the way peers expect to read them.
func sortCandidates(cs []pice.Candidate) {
	sort.SliceStable(cs, func(i, j int) bool { return cs[i].Priority() > cs[j].Priority() })
}
