// Package ua is punchline's SIP user agent: the signaling half of a
// softphone, built on github.com/emiago/sipgo.
//
// It registers an address-of-record with a registrar (RFC 3261 §10) using
// digest authentication (RFC 2617/RFC 8760: MD5 and SHA-256), refreshes the
// binding before it expires, re-registers with exponential backoff after a
// failure, and keeps the NAT binding towards the server open (RFC 5626
// §4.4: CRLF on TCP, STUN binding requests on UDP).
//
// Calls are INVITE dialogs (RFC 3261 §12–§15): outgoing INVITE with
// proxy digest (407), provisional responses, 2xx, ACK, BYE and CANCEL;
// incoming INVITE answered with 180 and 2xx (retransmitted until the ACK
// arrives, §13.3.1.4) or refused with 486 when the phone is busy; and
// re-INVITE in both directions, which the phone uses for ICE restarts and
// hold. The package carries SDP bodies without looking into them: offers
// and answers are built by the phone engine (internal/phone).
//
// Every request goes to the configured server, which acts as outbound
// proxy: a phone behind a NAT can only be reached through the flow it
// registered over, so in-dialog requests follow the dialog's route set
// (the reversed Record-Route, §12.1.2) and are sent to the server address
// even when the route set is empty. All requests leave from one local UDP
// socket, or over one TCP connection, so that the server's NAT binding is
// the one the registrar recorded.
package ua
