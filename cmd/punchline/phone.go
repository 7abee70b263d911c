package main

import (
	"context"
	"errors"
	"io"
)

func runPhone(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("phone is not built yet")
}
