package focus

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
)

func sampleInfo() *ConferenceInfo {
	return &ConferenceInfo{
		Entity:  "sip:room-standup@example.org",
		State:   StateFull,
		Version: 7,
		Subject: "standup",
		Users: []User{
			{Entity: "sip:alice@example.org", State: StateFull, DisplayText: "alice", Status: "connected", Seq: 1, Kind: KindMesh, UploadKbps: 128},
			{Entity: "sip:bob@example.org", State: StateFull, DisplayText: "bob", Status: "connected", Seq: 2, Kind: KindMesh, Forwarder: "127.0.0.1:40000"},
			{Entity: "sip:carol@example.org", State: StateFull, DisplayText: "carol", Status: "connected", JoiningMethod: "dialed-in", Seq: 3, Kind: KindBridge},
		},
	}
}

func TestConferenceInfoRoundTripKeepsEveryField(t *testing.T) {
	in := sampleInfo()
	raw, err := in.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), `xmlns="urn:ietf:params:xml:ns:conference-info"`) {
		t.Fatalf("document lacks the RFC 4575 namespace:\n%s", raw)
	}
	if !strings.Contains(string(raw), ">3</user-count>") {
		t.Fatalf("document lacks user-count 3:\n%s", raw)
	}
	out, err := ParseConferenceInfo(raw)
	if err != nil {
		t.Fatalf("parse own output: %v\n%s", err, raw)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip changed the document:\nin  %+v\nout %+v", in, out)
	}
}

func TestParseForeignRFC4575Document(t *testing.T) {
	raw, err := os.ReadFile("testdata/conference-info-rfc4575.xml")
	if err != nil {
		t.Fatal(err)
	}
	ci, err := ParseConferenceInfo(raw)
	if err != nil {
		t.Fatal(err)
	}
	if ci.Entity != "sips:conf233@example.com" || ci.Version != 1 || ci.State != StateFull {
		t.Fatalf("header fields: %+v", ci)
	}
	if len(ci.Users) != 2 || ci.Users[1].Entity != "sip:alice@example.com" || ci.Users[1].Status != "connected" {
		t.Fatalf("users: %+v", ci.Users)
	}
	if ci.Users[0].Kind != "" {
		t.Fatalf("a document without the mesh extension has no kind, got %q", ci.Users[0].Kind)
	}
}

func TestParseRejectsBadDocuments(t *testing.T) {
	cases := map[string]string{
		"empty":            "",
		"not xml":          "hello",
		"wrong root":       `<foo xmlns="urn:ietf:params:xml:ns:conference-info" entity="sip:a@b"/>`,
		"wrong namespace":  `<conference-info xmlns="urn:example" entity="sip:a@b"/>`,
		"no entity":        `<conference-info xmlns="urn:ietf:params:xml:ns:conference-info" version="1"/>`,
		"bad state":        `<conference-info xmlns="urn:ietf:params:xml:ns:conference-info" entity="sip:a@b" state="weird"/>`,
		"user no entity":   `<conference-info xmlns="urn:ietf:params:xml:ns:conference-info" entity="sip:a@b"><users><user/></users></conference-info>`,
		"bad kind":         `<conference-info xmlns="urn:ietf:params:xml:ns:conference-info" entity="sip:a@b"><users><user entity="sip:x@b"><mesh xmlns="urn:punchline:params:xml:ns:mesh" seq="1" kind="evil"/></user></users></conference-info>`,
		"negative version": `<conference-info xmlns="urn:ietf:params:xml:ns:conference-info" entity="sip:a@b" version="-1"/>`,
		"custom entity":    `<!DOCTYPE x [<!ENTITY a "aaaa">]><conference-info xmlns="urn:ietf:params:xml:ns:conference-info" entity="&a;"/>`,
		"oversize":         `<conference-info xmlns="urn:ietf:params:xml:ns:conference-info" entity="sip:a@b">` + strings.Repeat(" ", maxDocumentBytes) + `</conference-info>`,
		"truncated":        `<conference-info xmlns="urn:ietf:params:xml:ns:conference-info" entity="sip:a@b"><users>`,
	}
	for name, doc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ParseConferenceInfo([]byte(doc))
			if !errors.Is(err, ErrBadConferenceInfo) {
				t.Fatalf("want ErrBadConferenceInfo, got %v", err)
			}
		})
	}
}

func TestParseOrdersUsersByJoinSequence(t *testing.T) {
	doc := `<conference-info xmlns="urn:ietf:params:xml:ns:conference-info" xmlns:m="urn:punchline:params:xml:ns:mesh" entity="sip:room-a@b" version="2"><users>
<user entity="sip:c@b"><m:mesh seq="9"/></user><user entity="sip:a@b"><m:mesh seq="3"/></user><user entity="sip:b@b"><m:mesh seq="5"/></user></users></conference-info>`
	ci, err := ParseConferenceInfo([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, u := range ci.Users {
		got = append(got, u.Entity)
	}
	if want := []string{"sip:a@b", "sip:b@b", "sip:c@b"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
}

func FuzzParseConferenceInfo(f *testing.F) {
	raw, _ := sampleInfo().Marshal()
	f.Add(raw)
	if b, err := os.ReadFile("testdata/conference-info-rfc4575.xml"); err == nil {
		f.Add(b)
	}
	f.Add([]byte(`<conference-info xmlns="urn:ietf:params:xml:ns:conference-info" entity="sip:a@b"/>`))
	f.Add([]byte(`<`))
	f.Fuzz(func(t *testing.T, body []byte) {
		ci, err := ParseConferenceInfo(body)
		if err != nil {
			if !errors.Is(err, ErrBadConferenceInfo) {
				t.Fatalf("error not wrapping ErrBadConferenceInfo: %v", err)
			}
			return
		}
		// Whatever parses must encode and parse back to the same roster.
		out, err := ci.Marshal()
		if err != nil {
			t.Fatalf("parsed document does not marshal: %v", err)
		}
		again, err := ParseConferenceInfo(out)
		if err != nil {
			t.Fatalf("marshalled document does not parse: %v\n%s", err, out)
		}
		if len(again.Users) != len(ci.Users) || again.Entity != ci.Entity || again.Version != ci.Version {
			t.Fatalf("round trip differs: %+v vs %+v", ci, again)
		}
	})
}
