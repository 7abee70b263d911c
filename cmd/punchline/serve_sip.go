package main

import (
	"context"
	"errors"
)

// startSIP starts the sip subsystem of serve. (Being built.)
func startSIP(ctx context.Context, env *serveEnv) (subsystem, error) {
	return nil, errors.New("sip is not built yet")
}
