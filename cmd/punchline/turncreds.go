package main

import (
	"context"
	"errors"
	"io"
)

func runTURNCredentials(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("turn-credentials is not built yet")
}
