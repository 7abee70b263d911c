package focus

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"sort"
	"strings"
)

// ContentType is the MIME type of the roster body carried by NOTIFY
// (RFC 4575 §4).
const ContentType = "application/conference-info+xml"

// EventPackage is the SIP event package name for the roster (RFC 4575 §3).
const EventPackage = "conference"

// Namespaces used in the roster document.
const (
	// NSConferenceInfo is the RFC 4575 namespace.
	NSConferenceInfo = "urn:ietf:params:xml:ns:conference-info"
	// NSMesh is punchline's extension namespace. RFC 4575 §5 lets any
	// element carry elements from other namespaces; receivers that do not
	// know ours ignore it and still see a valid roster.
	NSMesh = "urn:punchline:params:xml:ns:mesh"
)

// Document states (RFC 4575 §5.1): "full" replaces what the subscriber
// knows, "partial" updates it element by element, "deleted" removes.
const (
	StateFull    = "full"
	StatePartial = "partial"
	StateDeleted = "deleted"
)

// Participant kinds carried in the mesh extension.
const (
	// KindMesh is a punchline phone taking part in the P2P mesh: the other
	// mesh participants set up a pairwise ICE leg with it.
	KindMesh = "mesh"
	// KindBridge is a plain SIP phone that called the room URI. The focus
	// stands in for it in the mesh: legs towards it are INVITEs to the
	// room URI with the bridge's user in a "leg" URI parameter, answered by
	// the focus with a plain RTP endpoint (no ICE).
	KindBridge = "bridge"
)

// maxDocumentBytes bounds what ParseConferenceInfo reads: a roster of a few
// hundred users fits easily, and a hostile peer cannot make us buffer
// megabytes.
const maxDocumentBytes = 256 << 10

// maxUsers bounds the users a parsed document may hold.
const maxUsers = 1024

// ConferenceInfo is the subset of RFC 4575's conference-type that a
// punchline roster uses, plus the mesh extension on each user.
type ConferenceInfo struct {
	// Entity is the conference URI, sip:room-NAME@REALM.
	Entity string
	// State is full, partial or deleted.
	State string
	// Version increases by one with every notification of a subscription
	// (RFC 4575 §4.6); a receiver drops documents not newer than what it has.
	Version uint32
	// Subject is the room's display name (optional).
	Subject string
	// Users are the participants, ordered by join sequence.
	Users []User
}

// User is one participant.
type User struct {
	// Entity is the participant's address of record, sip:NAME@REALM.
	Entity string
	// State is full, partial or deleted (the last in partial documents when
	// a participant left).
	State string
	// DisplayText is the user name shown to people.
	DisplayText string
	// Status is the endpoint status: connected, disconnected, ...
	// (RFC 4575 §5.6.3).
	Status string
	// JoiningMethod is dialed-in for phones that called the room.
	JoiningMethod string

	// Mesh extension (namespace NSMesh).

	// Seq is the participant's join sequence number in this room. Newcomers
	// have larger numbers; the participant with the larger Seq of a pair
	// sends the INVITE for their leg, which avoids glare.
	Seq uint64
	// Kind is KindMesh or KindBridge.
	Kind string
	// UploadKbps is the upload budget the participant declared (0 means
	// unlimited).
	UploadKbps int
	// Forwarder is "host:port" of the server's RTP forwarder port for this
	// participant, when the participant was told to send through it.
	Forwarder string
}

// xml mirrors of the wire format. encoding/xml matches namespaced elements
// by "namespace localname" tags.
type xmlConferenceInfo struct {
	XMLName     xml.Name        `xml:"urn:ietf:params:xml:ns:conference-info conference-info"`
	Entity      string          `xml:"entity,attr"`
	State       string          `xml:"state,attr,omitempty"`
	Version     uint32          `xml:"version,attr"`
	Description *xmlDescription `xml:"urn:ietf:params:xml:ns:conference-info conference-description"`
	ConfState   *xmlConfState   `xml:"urn:ietf:params:xml:ns:conference-info conference-state"`
	Users       *xmlUsers       `xml:"urn:ietf:params:xml:ns:conference-info users"`
}

type xmlDescription struct {
	Subject string `xml:"urn:ietf:params:xml:ns:conference-info subject,omitempty"`
}

type xmlConfState struct {
	UserCount int  `xml:"urn:ietf:params:xml:ns:conference-info user-count"`
	Active    bool `xml:"urn:ietf:params:xml:ns:conference-info active"`
}

type xmlUsers struct {
	State string    `xml:"state,attr,omitempty"`
	User  []xmlUser `xml:"urn:ietf:params:xml:ns:conference-info user"`
}

type xmlUser struct {
	Entity      string       `xml:"entity,attr"`
	State       string       `xml:"state,attr,omitempty"`
	DisplayText string       `xml:"urn:ietf:params:xml:ns:conference-info display-text,omitempty"`
	Endpoint    *xmlEndpoint `xml:"urn:ietf:params:xml:ns:conference-info endpoint"`
	Mesh        *xmlMesh     `xml:"urn:punchline:params:xml:ns:mesh mesh"`
}

type xmlEndpoint struct {
	Entity        string `xml:"entity,attr,omitempty"`
	State         string `xml:"state,attr,omitempty"`
	Status        string `xml:"urn:ietf:params:xml:ns:conference-info status,omitempty"`
	JoiningMethod string `xml:"urn:ietf:params:xml:ns:conference-info joining-method,omitempty"`
}

type xmlMesh struct {
	Seq        uint64 `xml:"seq,attr"`
	Kind       string `xml:"kind,attr,omitempty"`
	UploadKbps int    `xml:"upload-kbps,attr,omitempty"`
	Forwarder  string `xml:"forwarder,attr,omitempty"`
}

// Output mirrors: children carry no namespace of their own and so inherit
// the root's default namespace, which keeps the document small (a roster
// of eight fits one UDP datagram comfortably).
type outConferenceInfo struct {
	XMLName     xml.Name        `xml:"urn:ietf:params:xml:ns:conference-info conference-info"`
	Entity      string          `xml:"entity,attr"`
	State       string          `xml:"state,attr,omitempty"`
	Version     uint32          `xml:"version,attr"`
	Description *outDescription `xml:"conference-description"`
	ConfState   *outConfState   `xml:"conference-state"`
	Users       *outUsers       `xml:"users"`
}

type outDescription struct {
	Subject string `xml:"subject,omitempty"`
}

type outConfState struct {
	UserCount int  `xml:"user-count"`
	Active    bool `xml:"active"`
}

type outUsers struct {
	User []outUser `xml:"user"`
}

type outUser struct {
	Entity      string       `xml:"entity,attr"`
	State       string       `xml:"state,attr,omitempty"`
	DisplayText string       `xml:"display-text,omitempty"`
	Endpoint    *outEndpoint `xml:"endpoint"`
	Mesh        *xmlMesh     `xml:"urn:punchline:params:xml:ns:mesh mesh"`
}

type outEndpoint struct {
	Entity        string `xml:"entity,attr,omitempty"`
	Status        string `xml:"status,omitempty"`
	JoiningMethod string `xml:"joining-method,omitempty"`
}

// Marshal encodes the document as application/conference-info+xml.
func (c *ConferenceInfo) Marshal() ([]byte, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	x := outConferenceInfo{
		Entity:    c.Entity,
		State:     c.State,
		Version:   c.Version,
		ConfState: &outConfState{UserCount: 0, Active: true},
		Users:     &outUsers{},
	}
	if x.State == "" {
		x.State = StateFull
	}
	if c.Subject != "" {
		x.Description = &outDescription{Subject: c.Subject}
	}
	for _, u := range c.Users {
		xu := outUser{
			Entity:      u.Entity,
			State:       u.State,
			DisplayText: u.DisplayText,
			Mesh: &xmlMesh{
				Seq:        u.Seq,
				Kind:       u.Kind,
				UploadKbps: u.UploadKbps,
				Forwarder:  u.Forwarder,
			},
		}
		if xu.State == "" {
			xu.State = StateFull
		}
		if u.Status != "" || u.JoiningMethod != "" {
			xu.Endpoint = &outEndpoint{Entity: u.Entity, Status: u.Status, JoiningMethod: u.JoiningMethod}
		}
		if u.State != StateDeleted {
			x.ConfState.UserCount++
		}
		x.Users.User = append(x.Users.User, xu)
	}
	var buf bytes.Buffer
	buf.WriteString(xml.Header)
	enc := xml.NewEncoder(&buf)
	if err := enc.Encode(x); err != nil {
		return nil, fmt.Errorf("encode conference-info: %w", err)
	}
	buf.WriteByte('\n')
	return buf.Bytes(), nil
}

func (c *ConferenceInfo) validate() error {
	if c.Entity == "" {
		return fmt.Errorf("%w: no entity", ErrBadConferenceInfo)
	}
	switch c.State {
	case "", StateFull, StatePartial, StateDeleted:
	default:
		return fmt.Errorf("%w: state %q", ErrBadConferenceInfo, c.State)
	}
	for _, u := range c.Users {
		if u.Entity == "" {
			return fmt.Errorf("%w: user without entity", ErrBadConferenceInfo)
		}
		switch u.State {
		case "", StateFull, StatePartial, StateDeleted:
		default:
			return fmt.Errorf("%w: user %s state %q", ErrBadConferenceInfo, u.Entity, u.State)
		}
		switch u.Kind {
		case "", KindMesh, KindBridge:
		default:
			return fmt.Errorf("%w: user %s kind %q", ErrBadConferenceInfo, u.Entity, u.Kind)
		}
	}
	return nil
}

// ParseConferenceInfo decodes an application/conference-info+xml body. It
// accepts documents from other conference servers (missing mesh extension:
// Kind is left empty), refuses oversize input and documents without the
// RFC 4575 root element or entity, and never reads past maxDocumentBytes.
func ParseConferenceInfo(body []byte) (*ConferenceInfo, error) {
	if len(body) > maxDocumentBytes {
		return nil, fmt.Errorf("%w: %d bytes exceeds %d", ErrBadConferenceInfo, len(body), maxDocumentBytes)
	}
	dec := xml.NewDecoder(bytes.NewReader(body))
	// Entities beyond XML's five predefined ones are refused: no external
	// DTDs, no billion-laughs expansion (encoding/xml does not expand
	// custom entities, and Strict mode rejects unknown ones).
	dec.Strict = true
	var x xmlConferenceInfo
	if err := dec.Decode(&x); err != nil {
		if err == io.EOF {
			return nil, fmt.Errorf("%w: empty document", ErrBadConferenceInfo)
		}
		return nil, fmt.Errorf("%w: %v", ErrBadConferenceInfo, err)
	}
	c := &ConferenceInfo{
		Entity:  strings.TrimSpace(x.Entity),
		State:   x.State,
		Version: x.Version,
	}
	if c.State == "" {
		c.State = StateFull
	}
	if x.Description != nil {
		c.Subject = x.Description.Subject
	}
	if x.Users != nil {
		if len(x.Users.User) > maxUsers {
			return nil, fmt.Errorf("%w: %d users exceeds %d", ErrBadConferenceInfo, len(x.Users.User), maxUsers)
		}
		for _, xu := range x.Users.User {
			u := User{Entity: strings.TrimSpace(xu.Entity), State: xu.State, DisplayText: xu.DisplayText}
			if u.State == "" {
				u.State = StateFull
			}
			if xu.Endpoint != nil {
				u.Status = xu.Endpoint.Status
				u.JoiningMethod = xu.Endpoint.JoiningMethod
			}
			if xu.Mesh != nil {
				u.Seq = xu.Mesh.Seq
				u.Kind = xu.Mesh.Kind
				u.UploadKbps = xu.Mesh.UploadKbps
				u.Forwarder = xu.Mesh.Forwarder
			}
			c.Users = append(c.Users, u)
		}
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	// Order by join sequence so every participant derives the same plan
	// from the same roster, whatever order the sender wrote.
	sort.SliceStable(c.Users, func(i, j int) bool { return c.Users[i].Seq < c.Users[j].Seq })
	return c, nil
}
