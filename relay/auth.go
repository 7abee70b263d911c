package relay

import (
	"crypto/hmac"
	"crypto/md5"  //nolint:gosec // RFC 8489 §9.2.2 long-term key is MD5 by definition.
	"crypto/sha1" //nolint:gosec // TURN REST passwords are HMAC-SHA1 by definition.
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/punchline/punchline/internal/store"
)

// LongTermKey returns the RFC 8489 §9.2.2 long-term credential key
// MD5(username ":" realm ":" password): the same bytes as a SIP digest HA1.
func LongTermKey(username, realm, password string) []byte {
	h := md5.Sum([]byte(username + ":" + realm + ":" + password)) //nolint:gosec // see import.
	return h[:]
}

// RESTPassword returns the TURN REST password for a username:
// base64(HMAC-SHA1(secret, username)).
func RESTPassword(secret, username string) string {
	mac := hmac.New(sha1.New, []byte(secret))
	mac.Write([]byte(username))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// RESTCredentials mints TURN REST ephemeral credentials for user, valid
// until now+ttl: username "expiry:user" with expiry in Unix seconds, and
// its password. These are what coturn's use-auth-secret accepts too.
func RESTCredentials(secret, user string, now time.Time, ttl time.Duration) (username, password string, expires time.Time) {
	expires = now.Add(ttl).Truncate(time.Second)
	username = strconv.FormatInt(expires.Unix(), 10)
	if user != "" {
		username += ":" + user
	}
	return username, RESTPassword(secret, username), expires
}

// StoreUsers serves UserKeys from punchline's account store. An account
// made for another realm is treated as unknown: its HA1 could never match.
func StoreUsers(st *store.Store, realm string) UserKeys {
	return UserKeysFunc(func(name string) ([]byte, error) {
		u, err := st.User(name)
		if err != nil {
			if errors.Is(err, store.ErrNoSuchUser) {
				return nil, fmt.Errorf("%w: %s", ErrNoSuchUser, name)
			}
			return nil, err
		}
		if u.Realm != realm {
			return nil, fmt.Errorf("%w: %s (account made for realm %q, server realm %q)", ErrNoSuchUser, name, u.Realm, realm)
		}
		return u.TURNKey()
	})
}

// authenticator resolves a STUN USERNAME to the user ID quotas count by and
// the long-term key that must have signed the message.
type authenticator struct {
	realm  string
	users  UserKeys
	secret string
	now    func() time.Time
}

// key returns the user ID and key for username, or an error saying why not.
// Usernames with a colon are TURN REST credentials ("expiry:user"); account
// names cannot contain one (store.ErrBadUsername). A bare number is tried
// as an account first and then as REST credentials without a user part.
func (a *authenticator) key(username, realm string) (userID string, key []byte, err error) {
	if realm != a.realm {
		return "", nil, fmt.Errorf("%w: realm %q", errWrongRealm, realm)
	}
	expiry, user, isREST := strings.Cut(username, ":")
	if !isREST && a.users != nil {
		k, err := a.users.TURNKey(username)
		if err == nil {
			if len(k) != md5.Size {
				return "", nil, fmt.Errorf("%w: stored key for %s has %d bytes", ErrBadCredentials, username, len(k))
			}
			return username, k, nil
		}
		if !errors.Is(err, ErrNoSuchUser) || !allDigits(username) {
			return "", nil, err
		}
	}
	if a.secret == "" || !allDigits(expiry) {
		return "", nil, fmt.Errorf("%w: %s", ErrNoSuchUser, username)
	}
	t, err := strconv.ParseInt(expiry, 10, 64)
	if err != nil {
		return "", nil, fmt.Errorf("%w: %s", ErrBadCredentials, username)
	}
	if t < a.now().Unix() {
		return "", nil, fmt.Errorf("%w: %s expired at %s", ErrExpired, username, time.Unix(t, 0).UTC().Format(time.RFC3339))
	}
	if user == "" {
		user = username
	}
	return user, LongTermKey(username, realm, RESTPassword(a.secret, username)), nil
}

var errWrongRealm = errors.New("wrong realm")

func allDigits(s string) bool {
	if s == "" || len(s) > 18 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
