//go:build !race

package imtest

// raceEnabled is true under the race detector, where timing figures mean
// nothing and load tests skip themselves.
const raceEnabled = false
