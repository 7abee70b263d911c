package focus

import (
	"net"
	"testing"

	"github.com/pion/sdp/v3"
)

const plainOffer = "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 6000 RTP/AVP 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"

func TestAudioTargetPrefersPCMU(t *testing.T) {
	sd := &sdp.SessionDescription{}
	if err := sd.UnmarshalString(plainOffer); err != nil {
		t.Fatal(err)
	}
	addr, pt, err := audioTarget(sd)
	if err != nil {
		t.Fatal(err)
	}
	if addr.String() != "192.0.2.10:6000" || pt != 0 {
		t.Fatalf("target %v pt %d, want 192.0.2.10:6000 pt 0", addr, pt)
	}
	for name, body := range map[string]string{
		"no G.711":   "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 6000 RTP/AVP 9\r\n",
		"no c= line": "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\n",
		"video only": "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=video 6000 RTP/AVP 96\r\n",
		"rejected":   "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\n",
	} {
		sd := &sdp.SessionDescription{}
		if err := sd.UnmarshalString(body); err != nil {
			continue // pion refuses it already: also a refusal
		}
		if _, _, err := audioTarget(sd); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// FuzzBridgeOffer feeds arbitrary SDP to the bridge's offer handling: it
// must refuse or pick a target, never panic, and a picked target must be a
// usable UDP address with a G.711 payload type.
func FuzzBridgeOffer(f *testing.F) {
	f.Add(plainOffer)
	f.Add("v=0\r\no=- 1 1 IN IP6 ::1\r\ns=-\r\nc=IN IP6 ::1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n")
	f.Add("v=0\r\n")
	f.Fuzz(func(t *testing.T, body string) {
		sd := &sdp.SessionDescription{}
		if err := sd.UnmarshalString(body); err != nil {
			return
		}
		addr, pt, err := audioTarget(sd)
		if err != nil {
			return
		}
		ua, ok := addr.(*net.UDPAddr)
		if !ok || ua.IP == nil || ua.Port <= 0 || ua.Port > 65535 || (pt != 0 && pt != 8) {
			t.Fatalf("bad target %v pt %d from %q", addr, pt, body)
		}
	})
}
