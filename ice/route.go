package ice

import (
	"net"
	"strconv"

	pice "github.com/pion/ice/v4"
)

// Route names, as the phone's stats JSON reports them.
const (
	// RouteDirect: neither side of the selected pair is a relayed
	// candidate, so media flows peer to peer.
	RouteDirect = "direct"
	// RouteRelayed: at least one side is a relayed candidate, so media
	// goes through a TURN server.
	RouteRelayed = "relayed"
)

// RouteInfo describes a selected candidate pair.
type RouteInfo struct {
	// Route is RouteDirect or RouteRelayed.
	Route string
	// LocalType and RemoteType are "host", "srflx", "prflx" or "relay".
	LocalType, RemoteType string
	// LocalAddr and RemoteAddr are the candidates' transport addresses
	// ("ip:port"). For a local relayed candidate LocalAddr is the address
	// the TURN server allocated.
	LocalAddr, RemoteAddr string
}

// Relayed reports whether media goes through a relay.
func (r RouteInfo) Relayed() bool { return r.Route == RouteRelayed }

func routeFromPair(local, remote pice.Candidate) RouteInfo {
	ri := RouteInfo{
		Route:      RouteDirect,
		LocalType:  local.Type().String(),
		RemoteType: remote.Type().String(),
		LocalAddr:  net.JoinHostPort(local.Address(), strconv.Itoa(local.Port())),
		RemoteAddr: net.JoinHostPort(remote.Address(), strconv.Itoa(remote.Port())),
	}
	if local.Type() == pice.CandidateTypeRelay || remote.Type() == pice.CandidateTypeRelay {
		ri.Route = RouteRelayed
	}
	return ri
}
