package relay

import (
	"errors"
	"sync"
)

var (
	errQuotaUser  = errors.New("allocation quota of user reached")
	errQuotaTotal = errors.New("server allocation capacity reached")
)

// quota counts live allocations per user and in total. A slot is taken
// when the relay socket is opened and given back when it is closed, so the
// count cannot drift from what really holds resources.
type quota struct {
	maxUser, maxTotal int // negative: unlimited

	mu      sync.Mutex // guards perUser and total
	perUser map[string]int
	total   int
}

func newQuota(maxUser, maxTotal int) *quota {
	return &quota{maxUser: maxUser, maxTotal: maxTotal, perUser: map[string]int{}}
}

// userHasRoom is the early check behind pion's QuotaHandler (486).
func (q *quota) userHasRoom(user string) bool {
	if q.maxUser < 0 {
		return true
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.perUser[user] < q.maxUser
}

// acquire takes a slot or says which limit is reached. It is the exact
// check: two read loops racing past userHasRoom still cannot exceed the
// user's quota here.
func (q *quota) acquire(user string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.maxTotal >= 0 && q.total >= q.maxTotal {
		return errQuotaTotal
	}
	if user != "" && q.maxUser >= 0 && q.perUser[user] >= q.maxUser {
		return errQuotaUser
	}
	q.total++
	if user != "" {
		q.perUser[user]++
	}
	return nil
}

func (q *quota) release(user string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.total--
	if user != "" {
		if q.perUser[user]--; q.perUser[user] <= 0 {
			delete(q.perUser, user)
		}
	}
}
