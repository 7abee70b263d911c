package focus

import (
	"reflect"
	"testing"
)

func TestMakePlan(t *testing.T) {
	cases := []struct {
		name  string
		peers []Peer
		want  map[string]string // user → Via
		load  map[string]int
	}{
		{
			name:  "unlimited participants send in full mesh",
			peers: []Peer{{User: "a", Seq: 1}, {User: "b", Seq: 2}, {User: "c", Seq: 3}},
			want:  map[string]string{"a": "", "b": "", "c": ""},
			load:  map[string]int{"a": 160, "b": 160, "c": 160},
		},
		{
			name:  "a budget that fits N-1 streams is full mesh",
			peers: []Peer{{User: "a", Seq: 1, UploadKbps: 160}, {User: "b", Seq: 2}, {User: "c", Seq: 3}},
			want:  map[string]string{"a": "", "b": "", "c": ""},
		},
		{
			name:  "limited participant sends through the peer with most spare upload",
			peers: []Peer{{User: "a", Seq: 1, UploadKbps: 100}, {User: "b", Seq: 2, UploadKbps: 300}, {User: "c", Seq: 3, UploadKbps: 500}, {User: "d", Seq: 4, UploadKbps: 400}},
			// Full mesh costs 240; forwarding costs 160 more. b cannot take it
			// (300-240-160 < 0), c has 500-240-160 = 100 spare, d has 0.
			want: map[string]string{"a": "c", "b": "", "c": "", "d": ""},
			load: map[string]int{"a": 80, "b": 240, "c": 400, "d": 240},
		},
		{
			name:  "ties go to the earlier joiner",
			peers: []Peer{{User: "lim", Seq: 1, UploadKbps: 80}, {User: "x", Seq: 2}, {User: "y", Seq: 3}},
			want:  map[string]string{"lim": "x", "x": "", "y": ""},
		},
		{
			name:  "no spare upload anywhere: the server forwards",
			peers: []Peer{{User: "a", Seq: 1, UploadKbps: 90}, {User: "b", Seq: 2, UploadKbps: 160}, {User: "c", Seq: 3, UploadKbps: 170}},
			want:  map[string]string{"a": Server, "b": "", "c": ""},
		},
		{
			name:  "a supernode's spare is used up by the first limited joiner",
			peers: []Peer{{User: "s", Seq: 1, UploadKbps: 400}, {User: "l1", Seq: 2, UploadKbps: 80}, {User: "l2", Seq: 3, UploadKbps: 80}},
			// Full mesh 160 + one forwarding 80 = 240 ≤ 400; a second would
			// be 320 ≤ 400 too, so s forwards both.
			want: map[string]string{"s": "", "l1": "s", "l2": "s"},
			load: map[string]int{"s": 320, "l1": 80, "l2": 80},
		},
		{
			name:  "supernode full: the second limited joiner goes to the server",
			peers: []Peer{{User: "s", Seq: 1, UploadKbps: 300}, {User: "l1", Seq: 2, UploadKbps: 80}, {User: "l2", Seq: 3, UploadKbps: 80}},
			want:  map[string]string{"s": "", "l1": "s", "l2": Server},
		},
		{
			name:  "two participants always talk directly",
			peers: []Peer{{User: "a", Seq: 1, UploadKbps: 10}, {User: "b", Seq: 2}},
			want:  map[string]string{"a": "", "b": ""},
		},
		{
			name:  "a bridged phone's audio enters at the server",
			peers: []Peer{{User: "a", Seq: 1}, {User: "sipp", Seq: 2, Bridge: true}, {User: "b", Seq: 3}},
			want:  map[string]string{"a": "", "sipp": Server, "b": ""},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := MakePlan(tc.peers)
			got := map[string]string{}
			for u, r := range p.Routes {
				got[u] = r.Via
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("routes %v, want %v", got, tc.want)
			}
			if tc.load != nil && !reflect.DeepEqual(p.Load, tc.load) {
				t.Fatalf("load %v, want %v", p.Load, tc.load)
			}
			// Nobody is planned beyond a budget it declared, except where the
			// server takes over (a limited sender always sends one stream).
			for _, x := range tc.peers {
				if x.UploadKbps > 0 && p.Load[x.User] > x.UploadKbps && p.Load[x.User] > StreamKbps {
					t.Errorf("%s planned %d kbit/s over its %d budget", x.User, p.Load[x.User], x.UploadKbps)
				}
			}
		})
	}
}

func TestPlanIsIndependentOfInputOrder(t *testing.T) {
	a := []Peer{{User: "a", Seq: 1, UploadKbps: 80}, {User: "b", Seq: 2, UploadKbps: 400}, {User: "c", Seq: 3, UploadKbps: 400}}
	b := []Peer{a[2], a[0], a[1]}
	if pa, pb := MakePlan(a), MakePlan(b); !reflect.DeepEqual(pa, pb) {
		t.Fatalf("plans differ by input order: %+v vs %+v", pa, pb)
	}
}

func TestPlanSendsAndForwards(t *testing.T) {
	p := MakePlan([]Peer{{User: "a", Seq: 1, UploadKbps: 80}, {User: "b", Seq: 2}, {User: "c", Seq: 3}})
	all := []string{"a", "b", "c"}
	if got := p.Sends("a", all); !reflect.DeepEqual(got, []string{"b"}) {
		t.Fatalf("a sends to %v", got)
	}
	if got := p.Sends("b", all); !reflect.DeepEqual(got, []string{"a", "c"}) {
		t.Fatalf("b sends to %v", got)
	}
	if got := p.ForwardsFor("b"); !reflect.DeepEqual(got, []string{"a"}) {
		t.Fatalf("b forwards %v", got)
	}
}
