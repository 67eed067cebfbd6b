package bench

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of the CPU times in /proc (USER_HZ), 100 Hz on
// every Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// procCPU returns the CPU time (user + system) process pid has used.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; the fields after it are
	// fixed: utime and stime are the 14th and 15th of the line.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: short line", pid)
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * clockTick, nil
}

// cpuOf sums procCPU over pids, skipping processes that are gone.
func cpuOf(pids []int) time.Duration {
	var sum time.Duration
	for _, p := range pids {
		if d, err := procCPU(p); err == nil {
			sum += d
		}
	}
	return sum
}

// machineCPU returns the busy and total CPU time of all cores since boot
// (the "cpu" line of /proc/stat; idle and iowait count as not busy).
func machineCPU() (busy, total time.Duration) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	for i, f := range strings.Fields(line)[1:] {
		v, _ := strconv.ParseInt(f, 10, 64)
		if i >= 8 { // guest time is already counted in user
			break
		}
		total += time.Duration(v) * clockTick
		if i != 3 && i != 4 { // idle, iowait
			busy += time.Duration(v) * clockTick
		}
	}
	return busy, total
}

// pidsByComm lists the processes whose command name is comm.
func pidsByComm(comm string) []int {
	var out []int
	eachPid(func(pid int) {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil && strings.TrimSpace(string(b)) == comm {
			out = append(out, pid)
		}
	})
	return out
}

// pidsByExe lists the processes running the executable at path.
func pidsByExe(path string) []int {
	var out []int
	eachPid(func(pid int) {
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil && exe == path {
			out = append(out, pid)
		}
	})
	return out
}

func eachPid(f func(int)) {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		if pid, err := strconv.Atoi(filepath.Base(d)); err == nil {
			f(pid)
		}
	}
}

// procStatusKB reads a "<field>: <n> kB" line of /proc/<pid>/status, such
// as VmRSS (resident now) or VmHWM (resident at its peak).
func procStatusKB(pid int, field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && k == field {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no %s", pid, field)
}

// parentOf returns the parent process id of pid.
func parentOf(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}
