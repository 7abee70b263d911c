package sip

import (
	"errors"
	"sync"
	"time"

	"github.com/punchline/punchline/internal/store"
)

// userCache keeps recently read accounts in memory so that the hot path
// (every authenticated REGISTER and INVITE) does not open a store
// transaction and decode JSON. Entries live for userCacheTTL: while serve
// runs it holds the store's file lock, so accounts change only when it is
// restarted, and a short TTL bounds staleness should that ever change.
type userCache struct {
	st  *store.Store
	now func() time.Time

	mu sync.Mutex
	// m maps a user name to its cached lookup; guarded by mu.
	m map[string]cachedUser
}

type cachedUser struct {
	u   store.User
	err error
	at  time.Time
}

const (
	userCacheTTL = 5 * time.Second
	// userCacheMax bounds memory under a flood of invented user names.
	userCacheMax = 100000
)

func newUserCache(st *store.Store) *userCache {
	return &userCache{st: st, now: time.Now, m: make(map[string]cachedUser)}
}

func (c *userCache) get(name string) (store.User, error) {
	now := c.now()
	c.mu.Lock()
	e, ok := c.m[name]
	c.mu.Unlock()
	if ok && now.Sub(e.at) < userCacheTTL {
		return e.u, e.err
	}
	u, err := c.st.User(name)
	if err != nil && !errors.Is(err, store.ErrNoSuchUser) {
		// Store trouble is not cached: the next request retries.
		return u, err
	}
	c.mu.Lock()
	if len(c.m) >= userCacheMax {
		clear(c.m)
	}
	c.m[name] = cachedUser{u: u, err: err, at: now}
	c.mu.Unlock()
	return u, err
}
