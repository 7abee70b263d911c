//go:build race

package relay

// raceEnabled: under the race detector sync.Pool drops a share of what is
// put back on purpose, so pooled buffers are allocated again and the
// allocation budgets of the hot path do not apply.
const raceEnabled = true
