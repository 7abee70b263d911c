package sip

import (
	"encoding/hex"
	"errors"
	"sync"
	"time"

	"github.com/punchline/punchline/internal/store"
)

// account is what authentication needs of a user, in 80 bytes: the HA1
// hashes in binary rather than the store's hex strings, and no creation
// time.
type account struct {
	name, realm string
	ha1MD5      [16]byte
	ha1SHA256   [32]byte
	hasMD5      bool
	hasSHA256   bool
}

// ha1Hex writes the HA1 for algorithm alg in hex to dst and returns it,
// or nil when the account has no HA1 for alg.
func (a *account) ha1Hex(dst *[64]byte, alg string) []byte {
	if alg == "SHA-256" {
		if !a.hasSHA256 {
			return nil
		}
		hex.Encode(dst[:], a.ha1SHA256[:])
		return dst[:64]
	}
	if !a.hasMD5 {
		return nil
	}
	hex.Encode(dst[:], a.ha1MD5[:])
	return dst[:32]
}

// userCache keeps recently read accounts in memory so that requests that
// come again within seconds (a caller's INVITEs, the callee lookups of the
// proxy) do not open a store transaction and decode JSON each time.
// Entries live for userCacheTTL: while serve runs it holds the store's
// file lock, so accounts change only when it is restarted, and a short
// TTL bounds staleness should that ever change. Expired entries are swept
// every TTL, so the cache holds only the accounts used in the last few
// seconds, at about a hundred bytes each.
type userCache struct {
	st  *store.Store
	now func() time.Time

	mu sync.Mutex
	// m maps a user name to its cached lookup; swept is when expired
	// entries were last removed; realm is the last realm read, shared by
	// entries that have the same. All guarded by mu.
	m     map[string]cachedUser
	swept time.Time
	realm string
}

type cachedUser struct {
	a account
	// missing records that the store has no such user.
	missing bool
	at      int64 // unix nanoseconds
}

const (
	userCacheTTL = 5 * time.Second
	// userCacheMax bounds memory under a flood of invented user names.
	userCacheMax = 100000
)

func newUserCache(st *store.Store) *userCache {
	return &userCache{st: st, now: time.Now, m: make(map[string]cachedUser)}
}

// get returns an account, from the cache when it was read recently.
func (c *userCache) get(name string) (account, error) {
	return c.lookup(name, true)
}

// lookup returns an account; with remember, a store read is cached.
// The registrar reads without remembering: a phone's next REGISTER comes
// minutes later, long after the entry would have expired, so caching it
// would only hold memory for every registration of the last few seconds.
func (c *userCache) lookup(name string, remember bool) (account, error) {
	now := c.now()
	c.mu.Lock()
	e, ok := c.m[name]
	if ok && now.UnixNano()-e.at < int64(userCacheTTL) {
		c.mu.Unlock()
		if e.missing {
			return account{}, store.ErrNoSuchUser
		}
		return e.a, nil
	}
	c.mu.Unlock()
	u, err := c.st.User(name)
	if err != nil && !errors.Is(err, store.ErrNoSuchUser) {
		// Store trouble is not cached: the next request retries.
		return account{}, err
	}
	var a account
	if err == nil {
		a = account{name: u.Name, realm: u.Realm}
		_, e1 := hex.Decode(a.ha1MD5[:], []byte(u.HA1MD5))
		_, e2 := hex.Decode(a.ha1SHA256[:], []byte(u.HA1SHA256))
		a.hasMD5 = e1 == nil && len(u.HA1MD5) == 32
		a.hasSHA256 = e2 == nil && len(u.HA1SHA256) == 64
	}
	if !remember {
		return a, err
	}
	c.mu.Lock()
	if now.Sub(c.swept) > userCacheTTL {
		c.sweepLocked(now)
	}
	if len(c.m) >= userCacheMax {
		clear(c.m)
	}
	if a.realm == c.realm {
		a.realm = c.realm
	} else {
		c.realm = a.realm
	}
	c.m[name] = cachedUser{a: a, missing: err != nil, at: now.UnixNano()}
	c.mu.Unlock()
	return a, err
}

// sweepLocked drops expired entries; c.mu must be held.
func (c *userCache) sweepLocked(now time.Time) {
	c.swept = now
	for k, e := range c.m {
		if now.UnixNano()-e.at >= int64(userCacheTTL) {
			delete(c.m, k)
		}
	}
}
