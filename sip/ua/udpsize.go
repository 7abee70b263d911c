package ua

import "github.com/emiago/sipgo/sip"

// sipgo refuses to send a UDP message longer than UDPMTUSize-200 bytes
// (1300 by default), following RFC 3261 §18.1.1, which asks to switch to
// TCP instead. An INVITE carrying ICE candidates (host, server-reflexive,
// relayed) and proxy credentials is about 1400 bytes, and our flow to the
// registrar is UDP: the registrar can only reach us over that flow, so a
// switch to TCP is no option. Softphones send such INVITEs over UDP and
// let IP fragment them; so do we, up to sipgo's 32 KB read buffer.
//
// The setting is sipgo's package variable, so it is set once, here, before
// any transport exists.
func init() {
	if limit := int(sip.TransportBufferReadSize); sip.UDPMTUSize < limit {
		sip.UDPMTUSize = limit
	}
}
