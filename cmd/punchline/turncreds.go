package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/punchline/punchline/relay"
)

// runTURNCredentials mints TURN REST ephemeral credentials: what a web
// service would hand a client so that it can use the relay for a while
// without an account (serve --turn-secret must be the same secret).
func runTURNCredentials(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("turn-credentials", flag.ContinueOnError)
	fs.SetOutput(stderr)
	secret := fs.String("secret", "", "the relay's shared secret (serve --turn-secret)")
	user := fs.String("user", "", "user the credentials are for (quotas count by it)")
	ttl := fs.Duration("ttl", 24*time.Hour, "how long the credentials stay valid")
	asJSON := fs.Bool("json", false, "print JSON {username, password, ttl, expires}")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *secret == "" {
		return fmt.Errorf("--secret is required (the same value as serve --turn-secret)")
	}
	if *user == "" {
		return fmt.Errorf("--user is required")
	}
	if *ttl <= 0 {
		return fmt.Errorf("--ttl %v: must be positive", *ttl)
	}
	username, password, expires := relay.RESTCredentials(*secret, *user, time.Now(), *ttl)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Username string `json:"username"`
			Password string `json:"password"`
			TTL      int64  `json:"ttl"`
			Expires  string `json:"expires"`
		}{username, password, int64(ttl.Seconds()), expires.UTC().Format(time.RFC3339)})
	}
	fmt.Fprintf(stdout, "username: %s\npassword: %s\n", username, password)
	return nil
}
