//go:build !race

package boot_test

// raceEnabled is true under the race detector, where the process tests'
// clients run several times slower and the loads are scaled down.
const raceEnabled = false
