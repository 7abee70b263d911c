// Package store is punchline's embedded database: accounts (as digest HA1
// hashes, never passwords) and the registrar's bindings, kept in one bbolt
// file in the data directory so that they survive a restart.
//
// The SIP registrar and the TURN relay read accounts from the same store: for
// one realm, the TURN long-term key MD5(user:realm:password) is the SIP
// digest HA1, so one username and password serve both.
package store

import (
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
)

// FileName is the database file inside the data directory.
const FileName = "punchline.db"

var (
	bucketUsers    = []byte("users")
	bucketBindings = []byte("bindings")
)

// Sentinel errors.
var (
	ErrNoSuchUser  = errors.New("no such user")
	ErrUserExists  = errors.New("user already exists")
	ErrBadUsername = errors.New("bad username: use letters, digits and . _ - + only")
)

// User is one account. Only hashes are stored.
type User struct {
	Name  string `json:"name"`
	Realm string `json:"realm"`
	// HA1MD5 is hex(MD5(name:realm:password)): SIP digest MD5 and the TURN
	// long-term key.
	HA1MD5 string `json:"ha1_md5"`
	// HA1SHA256 is hex(SHA-256(name:realm:password)) for RFC 8760 digest.
	HA1SHA256 string    `json:"ha1_sha256"`
	Created   time.Time `json:"created"`
}

// TURNKey returns the 16-byte long-term credential key (the binary MD5 HA1).
func (u User) TURNKey() ([]byte, error) {
	return hex.DecodeString(u.HA1MD5)
}

// HA1 computes the digest HA1 hashes for a user.
func HA1(name, realm, password string) (md5hex, sha256hex string) {
	a := name + ":" + realm + ":" + password
	m := md5.Sum([]byte(a))
	s := sha256.Sum256([]byte(a))
	return hex.EncodeToString(m[:]), hex.EncodeToString(s[:])
}

// Store is the embedded database. It is safe for concurrent use.
type Store struct {
	db *bolt.DB
}

// Open opens (creating if needed) the store in directory dir.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("open store %s: locked by another process (is punchline serve running on this data directory?)", dir)
		}
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketUsers, bucketBindings} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	return &Store{db: db}, nil
}

// Close flushes and closes the database. It is safe to call twice.
func (s *Store) Close() error {
	if s == nil || s.db == nil {
		return nil
	}
	return s.db.Close()
}

func validName(name string) bool {
	if name == "" || len(name) > 64 {
		return false
	}
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case r == '.' || r == '_' || r == '-' || r == '+':
		default:
			return false
		}
	}
	return true
}

// AddUser creates an account. With replace, an existing one is overwritten
// (a password change).
func (s *Store) AddUser(name, realm, password string, replace bool) error {
	if !validName(name) {
		return fmt.Errorf("%w: %q", ErrBadUsername, name)
	}
	if password == "" {
		return errors.New("empty password")
	}
	m, sh := HA1(name, realm, password)
	u := User{Name: name, Realm: realm, HA1MD5: m, HA1SHA256: sh, Created: time.Now().UTC()}
	raw, err := json.Marshal(u)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketUsers)
		if !replace && b.Get([]byte(name)) != nil {
			return fmt.Errorf("%w: %s", ErrUserExists, name)
		}
		return b.Put([]byte(name), raw)
	})
}

// AddUsers creates many accounts (name to password) in one transaction,
// which costs one fsync instead of one per account: bulk provisioning and
// benchmarks that need thousands of users. With replace, existing accounts
// are overwritten; without, an existing name fails the whole batch.
func (s *Store) AddUsers(realm string, accounts map[string]string, replace bool) error {
	raws := make(map[string][]byte, len(accounts))
	now := time.Now().UTC()
	for name, password := range accounts {
		if !validName(name) {
			return fmt.Errorf("%w: %q", ErrBadUsername, name)
		}
		if password == "" {
			return fmt.Errorf("empty password for %s", name)
		}
		m, sh := HA1(name, realm, password)
		raw, err := json.Marshal(User{Name: name, Realm: realm, HA1MD5: m, HA1SHA256: sh, Created: now})
		if err != nil {
			return err
		}
		raws[name] = raw
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketUsers)
		for name, raw := range raws {
			if !replace && b.Get([]byte(name)) != nil {
				return fmt.Errorf("%w: %s", ErrUserExists, name)
			}
			if err := b.Put([]byte(name), raw); err != nil {
				return err
			}
		}
		return nil
	})
}

// User returns one account.
func (s *Store) User(name string) (User, error) {
	var u User
	err := s.db.View(func(tx *bolt.Tx) error {
		raw := tx.Bucket(bucketUsers).Get([]byte(name))
		if raw == nil {
			return fmt.Errorf("%w: %s", ErrNoSuchUser, name)
		}
		return decodeUser(raw, &u)
	})
	return u, err
}

// decodeUser reads an account record. Records are written by
// json.Marshal(User), so a strict reader of exactly that shape handles
// them without reflection (the registrar reads one for every
// authenticated REGISTER, and encoding/json was most of that read's
// cost); anything else, such as a record with escaped characters, goes
// through encoding/json.
func decodeUser(raw []byte, u *User) error {
	if decodeUserFast(raw, u) {
		return nil
	}
	return json.Unmarshal(raw, u)
}

// decodeUserFast accepts only {"name":"…","realm":"…","ha1_md5":"…",
// "ha1_sha256":"…","created":"…"} with printable ASCII values free of
// quotes and backslashes, which encoding/json would read the same way.
func decodeUserFast(raw []byte, u *User) bool {
	var v User
	rest := raw
	field := func(prefix string) (string, bool) {
		if len(rest) < len(prefix) || string(rest[:len(prefix)]) != prefix {
			return "", false
		}
		rest = rest[len(prefix):]
		for i, c := range rest {
			if c == '"' {
				val := string(rest[:i])
				rest = rest[i+1:]
				return val, true
			}
			if c < 0x20 || c > 0x7e || c == '\\' {
				return "", false
			}
		}
		return "", false
	}
	var ok bool
	if v.Name, ok = field(`{"name":"`); !ok {
		return false
	}
	if v.Realm, ok = field(`,"realm":"`); !ok {
		return false
	}
	if v.HA1MD5, ok = field(`,"ha1_md5":"`); !ok {
		return false
	}
	if v.HA1SHA256, ok = field(`,"ha1_sha256":"`); !ok {
		return false
	}
	created, ok := field(`,"created":"`)
	if !ok || string(rest) != "}" {
		return false
	}
	if err := v.Created.UnmarshalText([]byte(created)); err != nil {
		return false
	}
	*u = v
	return true
}

// Users lists all accounts sorted by name.
func (s *Store) Users() ([]User, error) {
	var out []User
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketUsers).ForEach(func(_, v []byte) error {
			var u User
			if err := decodeUser(v, &u); err != nil {
				return err
			}
			out = append(out, u)
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, err
}

// HasUsers reports whether any account exists. Unlike Users it reads one
// page of the database, not every account: serve asks this at start-up,
// and reading 10,000 accounts there costs time and maps megabytes of the
// file into memory for nothing.
func (s *Store) HasUsers() (bool, error) {
	has := false
	err := s.db.View(func(tx *bolt.Tx) error {
		k, _ := tx.Bucket(bucketUsers).Cursor().First()
		has = k != nil
		return nil
	})
	return has, err
}

// RemoveUser deletes an account.
func (s *Store) RemoveUser(name string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketUsers)
		if b.Get([]byte(name)) == nil {
			return fmt.Errorf("%w: %s", ErrNoSuchUser, name)
		}
		return b.Delete([]byte(name))
	})
}

// PutBindings replaces the stored bindings of several addresses-of-record in
// one transaction; a nil value deletes that AOR. The registrar batches its
// writes through this, so a burst of REGISTERs costs one fsync.
func (s *Store) PutBindings(batch map[string][]byte) error {
	if len(batch) == 0 {
		return nil
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketBindings)
		for aor, v := range batch {
			var err error
			if v == nil {
				err = b.Delete([]byte(aor))
			} else {
				err = b.Put([]byte(aor), v)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// Bindings returns every stored AOR's bindings blob.
func (s *Store) Bindings() (map[string][]byte, error) {
	out := map[string][]byte{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketBindings).ForEach(func(k, v []byte) error {
			out[string(k)] = append([]byte(nil), v...)
			return nil
		})
	})
	return out, err
}

var bucketMeta = []byte("meta")

// Secret returns a 32-byte random secret named name, creating and storing
// it on first use. The registrar signs nonces and Record-Route flow tokens
// with it, so that both stay valid across a restart.
func (s *Store) Secret(name string) ([]byte, error) {
	var out []byte
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		key := []byte("secret:" + name)
		if v := b.Get(key); len(v) == 32 {
			out = append([]byte(nil), v...)
			return nil
		}
		out = make([]byte, 32)
		if _, err := rand.Read(out); err != nil {
			return err
		}
		return b.Put(key, out)
	})
	return out, err
}
