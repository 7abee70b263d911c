package conference_test

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/punchline/punchline/internal/conference"
	"github.com/punchline/punchline/internal/conference/conftest"
	"github.com/punchline/punchline/sip/focus"
)

func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("PUNCHLINE_LAB") != "" {
			t.Fatalf("%s not installed, and PUNCHLINE_LAB is set: CI must run this test", name)
		}
		t.Skipf("%s not installed (Debian package sip-tester); skipping", name)
	}
	return p
}

// freeUDPPort returns a loopback UDP port that was free a moment ago.
func freeUDPPort(t *testing.T) int {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().(*net.UDPAddr).Port
}

// A plain SIP phone (sipp, no ICE) calls the room URI. The server bridges
// it: it mixes the room for sipp and passes sipp's audio into the mesh.
// sipp echoes every RTP packet it receives, so when ann hears her own tone
// coming back through the bridge, audio went both ways: room → sipp (the
// mix reached it) and sipp → room (what it sent reached ann).
func TestPlainSIPPhoneJoinsRoomThroughBridgeBothDirections(t *testing.T) {
	sipp := needTool(t, "sipp")
	users := []string{"ann", "ben", "carl"}
	srv := conftest.Start(t, users, nil)
	ctx := context.Background()
	ann := srv.Join(ctx, t, "ann", "bridged", 440, conftest.Options{})
	defer ann.Leave()
	ben := srv.Join(ctx, t, "ben", "bridged", 620, conftest.Options{})
	defer ben.Leave()
	conftest.WaitLegs(t, []*conftest.Phone{ann, ben}, 1, 10*time.Second)

	scen, err := filepath.Abs("testdata/sipp_room_bridge.xml")
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(srv.Addr)
	sigPort, mediaPort := freeUDPPort(t), freeUDPPort(t)
	cmd := exec.Command(sipp, net.JoinHostPort(host, port),
		"-sf", scen, "-s", "room-bridged", "-key", "caller", "carl",
		"-au", "carl", "-ap", conftest.Password,
		"-i", "127.0.0.1", "-p", strconv.Itoa(sigPort),
		"-mi", "127.0.0.1", "-mp", strconv.Itoa(mediaPort), "-rtp_echo",
		"-m", "1", "-timeout", "30s", "-timeout_error", "-nostdin",
		"-trace_err", "-error_file", filepath.Join(t.TempDir(), "sipp_err.log"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-done
		}
	}()

	// carl appears in the roster as a bridged participant.
	deadline := time.After(8 * time.Second)
	for !slices.Contains(ann.Engine.Members(), "ann") || !hasBridge(ann.Engine, "carl") {
		select {
		case <-ann.Engine.RosterChanged():
		case <-deadline:
			t.Fatalf("carl never joined the roster; sipp said:\n%s", out.String())
		}
	}
	time.Sleep(3500 * time.Millisecond)
	got := heard(ann.Rec.Samples(), []float64{440, 620}, 3)
	if got[440] < 2 {
		t.Errorf("ann does not hear her own tone back through sipp's echo: room→sipp→room audio missing (detected in %d of the last 3 s)", got[440])
	}
	if got[620] < 2 {
		t.Errorf("ann does not hear ben (detected in %d of the last 3 s)", got[620])
	}
	var carl *conference.PeerStats
	st := ann.Engine.Stats()
	for i := range st.Peers {
		if st.Peers[i].User == "carl" {
			carl = &st.Peers[i]
		}
	}
	if carl == nil || carl.Route != conference.RouteForwarded || carl.Via != focus.Server || carl.RTPPacketsReceived < 50 {
		t.Errorf("ann's stats for carl: %+v", carl)
	}
	if n := srv.MetricValue(t, "punchline_conference_media_bytes_total", "room=bridged"); n == 0 {
		t.Errorf("the bridge carried media but the room's byte counter is 0")
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("sipp failed (its BYE must get 200 from the focus): %v\n%s", err, out.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("sipp did not finish:\n%s", out.String())
	}
	// The BYE reached the focus: carl leaves the room at once, not 10 s
	// after his RTP stopped.
	left := time.Now()
	for srv.MetricValue(t, "punchline_conference_participants", "room=bridged", "kind=bridge") != 0 {
		if time.Since(left) > 2*time.Second {
			t.Fatalf("carl still in the room 2 s after his BYE was answered")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func hasBridge(e *conference.Engine, user string) bool {
	for _, p := range e.Stats().Peers {
		if p.User == user && p.Via == focus.Server {
			return true
		}
	}
	return false
}
