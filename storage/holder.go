package storage

import (
	"os"
	"strconv"
	"strings"
)

// Holder is the process holding a lease: its host, pid and start (on Linux
// the boot id and the starttime field of /proc/PID/stat), so a holder that
// died is told at once, and a pid reused by another process is not taken
// for it.
type Holder struct {
	Host    string `json:"host"`
	PID     int    `json:"pid"`
	Started string `json:"started,omitempty"` // empty where unknown (not Linux)
}

// ThisProcess is the running process as a lease holder on host.
func ThisProcess(host string) Holder { return HolderOf(host, os.Getpid()) }

// HolderOf is process pid of this machine as a lease holder on host.
func HolderOf(host string, pid int) Holder {
	return Holder{Host: host, PID: pid, Started: processStart(pid)}
}

// GoneFrom reports whether h is known dead as seen from a process on host:
// it ran on this host, and its pid is no longer running, or now runs a
// process that started at another time (or in another boot). A holder on
// another host, or one this platform cannot check, is never called gone:
// its lease still expires by itself.
func (h Holder) GoneFrom(host string) bool {
	if h.Host == "" || h.Host != host || h.PID <= 0 || h.Started == "" {
		return false
	}
	if processStart(os.Getpid()) == "" {
		return false // no /proc here: cannot tell
	}
	now := processStart(h.PID)
	return now == "" || now != h.Started
}

// processStart identifies when process pid started: "BOOTID/TICKS" from
// /proc (ticks since boot, field 22 of /proc/PID/stat); "" when pid does
// not exist or /proc is not there.
func processStart(pid int) string {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	// The command name (field 2) is in parentheses and may hold spaces or
	// parentheses itself: count fields after the last ')'.
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return ""
	}
	fields := strings.Fields(s[i+1:])
	const starttime = 22 - 3 // fields[0] is field 3 (state)
	if len(fields) <= starttime {
		return ""
	}
	boot, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	return strings.TrimSpace(string(boot)) + "/" + fields[starttime]
}
