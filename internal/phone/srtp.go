package phone

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/punchline/punchline/ice"
	"github.com/punchline/punchline/media"
)

// SRTPMode says whether a phone's calls encrypt their media with SRTP
// (RFC 3711) keyed by SDES (RFC 4568 a=crypto in the SDP).
type SRTPMode int

const (
	// SRTPOptional (the zero value, the default) offers SRTP as
	// "best-effort SRTP": m=audio ... RTP/AVP with a=crypto lines, which a
	// phone without SRTP ignores and answers with plain RTP, and a phone
	// with SDES answers with its own a=crypto (baresip's "srtp" mode,
	// linphone's and pjsip's optional SRTP do the same). It answers
	// RTP/SAVP offers with SRTP, best-effort offers with SRTP, plain
	// offers with plain RTP.
	SRTPOptional SRTPMode = iota
	// SRTPMandatory offers RTP/SAVP (RFC 4568 proper), and refuses
	// offers and answers without usable a=crypto: 488 to such an offer,
	// a hang-up after such an answer.
	SRTPMandatory
	// SRTPOff offers plain RTP/AVP without a=crypto, ignores a=crypto in
	// best-effort offers and answers RTP/SAVP offers with 488.
	SRTPOff
)

// ParseSRTPMode reads "optional" (or ""), "mandatory" or "off".
func ParseSRTPMode(s string) (SRTPMode, error) {
	switch strings.ToLower(s) {
	case "", "optional":
		return SRTPOptional, nil
	case "mandatory", "required":
		return SRTPMandatory, nil
	case "off", "none", "no":
		return SRTPOff, nil
	}
	return 0, fmt.Errorf("--srtp %q: want off, optional or mandatory", s)
}

func (m SRTPMode) String() string {
	switch m {
	case SRTPMandatory:
		return "mandatory"
	case SRTPOff:
		return "off"
	}
	return "optional"
}

// offerSuites are the suites we offer, in our order of preference: the
// RFC 4568 mandatory-to-implement suite first (every SDES phone has it,
// and an answerer takes the first it supports), the short-tag variant
// (RFC 4568 §6.2.2; SRTCP keeps the 80-bit tag), and AES-GCM (RFC 7714).
var offerSuites = []string{ice.SuiteAES128SHA1_80, ice.SuiteAES128SHA1_32, ice.SuiteAEADAES128GCM}

// freshCrypto returns a line with a new random key for each suite, tags
// counting from 1.
func freshCrypto(suites []string) ([]ice.Crypto, error) {
	out := make([]ice.Crypto, 0, len(suites))
	for i, s := range suites {
		c, err := ice.NewCrypto(i+1, s)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// mediaKey turns a negotiated a=crypto line into the media package's key.
func mediaKey(c ice.Crypto) media.SRTPKey {
	return media.SRTPKey{Suite: c.Suite, MasterKey: c.MasterKey(), MasterSalt: c.MasterSalt(),
		MKI: c.MKIBytes(), ReplayWindow: c.ReplayWindow()}
}

func sameKey(a, b *ice.Crypto) bool {
	return a != nil && b != nil && a.Suite == b.Suite && bytes.Equal(a.Key, b.Key) &&
		a.MKI == b.MKI && a.MKILen == b.MKILen
}

// offerCryptoLocked decorates an offer we send: fresh keys for every
// offered suite (a new offer is a new crypto context, RFC 4568 §7.1.4,
// except for HoldOffer, which keeps the current one), RTP/SAVP when SRTP
// is mandatory. Once media runs, a plain call stays plain and an
// encrypted one stays encrypted: re-offers neither add nor drop SRTP.
func (l *Leg) offerCryptoLocked(d *ice.Description) error {
	l.offered = nil
	if l.cfg.SRTP == SRTPOff || (l.connected && l.srtp == nil) {
		return nil
	}
	lines, err := freshCrypto(offerSuites)
	if err != nil {
		return err
	}
	d.Crypto, l.offered = lines, lines
	if l.cfg.SRTP == SRTPMandatory || (l.connected && ice.SDESProto(l.proto)) {
		d.Proto = ice.SRTPProto(d.Proto)
	}
	return nil
}

// takeAnswerCryptoLocked applies the crypto of the peer's answer to our
// offer: the answer's line must echo the tag and suite of one we offered.
func (l *Leg) takeAnswerCryptoLocked(d *ice.Description) error {
	if len(l.offered) == 0 {
		if ice.SDESProto(d.Proto) {
			return fmt.Errorf("%w: RTP/SAVP answer to a plain RTP offer", ErrBadOffer)
		}
		return nil
	}
	for _, c := range d.Crypto {
		for _, o := range l.offered {
			if c.Tag == o.Tag && c.Suite == o.Suite && c.Usable() == nil {
				l.proto = d.Proto
				return l.setKeysLocked(o, c)
			}
		}
	}
	switch {
	case ice.SDESProto(d.Proto):
		return fmt.Errorf("%w: RTP/SAVP answer without an a=crypto line matching our offer", ErrBadOffer)
	case l.srtp != nil:
		return fmt.Errorf("%w: %w", ErrBadOffer, ErrSRTPDowngrade)
	case l.cfg.SRTP == SRTPMandatory:
		return fmt.Errorf("%w: the answer has no a=crypto we offered", ErrSRTPRequired)
	}
	l.tx, l.rx, l.proto = nil, nil, d.Proto
	return nil
}

// answerCryptoLocked picks what our answer to offer carries. It returns
// the lines to put in the local description for ice.NewAnswer: none for
// a plain answer, else our key for the chosen suite (the current one when
// the peer re-offers the key it already uses on the same ICE generation,
// RFC 4568 §7.1.4; a fresh one otherwise).
func (l *Leg) answerCryptoLocked(offer *ice.Description, restart bool) (ours []ice.Crypto, theirs *ice.Crypto, err error) {
	if l.cfg.SRTP == SRTPOff || (l.connected && l.srtp == nil) {
		if ice.SDESProto(offer.Proto) {
			why := "this phone runs --srtp off"
			if l.connected {
				why = "the call is not encrypted and stays so"
			}
			return nil, nil, fmt.Errorf("%w: the offer needs SRTP (%s): %w", ErrBadOffer, why, ice.ErrUnsupportedTransport)
		}
		return nil, nil, nil
	}
	fresh, err := freshCrypto(media.SRTPSuites())
	if err != nil {
		return nil, nil, err
	}
	_, chosen, ok := ice.SelectCrypto(offer.Crypto, fresh)
	switch {
	case !ok && ice.SDESProto(offer.Proto):
		return nil, nil, fmt.Errorf("%w: %w", ErrBadOffer, ice.ErrNoCommonCrypto)
	case !ok && l.srtp != nil:
		return nil, nil, fmt.Errorf("%w: %w", ErrBadOffer, ErrSRTPDowngrade)
	case !ok && l.cfg.SRTP == SRTPMandatory:
		return nil, nil, fmt.Errorf("%w: %w", ErrBadOffer, ErrSRTPRequired)
	case !ok:
		return nil, nil, nil // best effort and nothing we share: plain
	}
	if !restart && l.tx != nil && sameKey(&chosen, l.rx) && chosen.Suite == l.tx.Suite {
		keep := *l.tx
		return []ice.Crypto{keep}, &chosen, nil
	}
	for _, f := range fresh {
		if f.Suite == chosen.Suite {
			return []ice.Crypto{f}, &chosen, nil
		}
	}
	return nil, nil, fmt.Errorf("%w: %w", ErrBadOffer, ice.ErrNoCommonCrypto)
}

// takeOwnAnswerLocked records the keys of an answer we built.
func (l *Leg) takeOwnAnswerLocked(ans *ice.Description, theirs *ice.Crypto) error {
	l.proto = ans.Proto
	if len(ans.Crypto) == 0 || theirs == nil {
		l.tx, l.rx = nil, nil
		return nil
	}
	return l.setKeysLocked(ans.Crypto[0], *theirs)
}

// setKeysLocked records the negotiated keys and, once media runs, rekeys
// the transform for whichever direction changed.
func (l *Leg) setKeysLocked(tx, rx ice.Crypto) error {
	if l.srtp != nil {
		if !sameKey(&tx, l.tx) {
			if err := l.srtp.SetLocalKey(mediaKey(tx)); err != nil {
				return err
			}
			l.log.Info("SRTP sending key changed", "suite", tx.Suite)
		}
		if !sameKey(&rx, l.rx) {
			if err := l.srtp.SetRemoteKey(mediaKey(rx)); err != nil {
				return err
			}
			l.log.Info("SRTP receiving key changed", "suite", rx.Suite)
		}
	}
	l.tx, l.rx = &tx, &rx
	return nil
}

// Encryption describes the media protection: "srtp SUITE" or "none".
func (l *Leg) Encryption() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.encryptionLocked()
}

func (l *Leg) encryptionLocked() string {
	if l.srtp != nil {
		return "srtp " + l.srtp.Suite()
	}
	if !l.connected && l.tx != nil {
		return "srtp " + l.tx.Suite
	}
	return "none"
}
