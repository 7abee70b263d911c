// Package deps pins the project's module requirements while packages are
// being written in parallel; it is removed once every import is real.
package deps

import (
	_ "github.com/emiago/sipgo"
	_ "github.com/pion/ice/v4"
	_ "github.com/pion/rtcp"
	_ "github.com/pion/rtp"
	_ "github.com/pion/sdp/v3"
	_ "github.com/pion/stun/v4"
	_ "github.com/pion/transport/v5/vnet"
	_ "github.com/pion/turn/v5"
	_ "github.com/zaf/g711"
	_ "go.uber.org/goleak"
)
