package main

import (
	"context"
	"errors"
)

// startRelay starts the relay subsystem of serve. (Being built.)
func startRelay(ctx context.Context, env *serveEnv) (subsystem, error) {
	return nil, errors.New("relay is not built yet")
}
