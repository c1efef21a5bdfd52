package footprint

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"syscall"
)

// Release hands back to the kernel the pages of the agent's own executable that are resident, then
// the heap that start-up left as garbage (debug.FreeOSMemory). Call it once, when start-up is over:
// the pages the steady state uses fault back in at once, and the rest (initialisation, decoding,
// code that ran once) stay out, so the process's RSS settles lower.
//
// Only mappings of /proc/self/exe that are read-only and hold no page copied on write are advised:
// their pages are clean copies of the file, so dropping them loses nothing. The advice is Cold, then
// DontNeed (see each); a kernel older than 5.4 refuses the first with EINVAL, and then DontNeed alone
// still lowers RSS. Report says what was done; its After is read once the
// advice has been applied.
func Release() (Report, error) {
	var rep Report
	var err error
	if rep.Before, err = readUsage(); err != nil {
		return rep, err
	}
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return rep, fmt.Errorf("footprint: %w", err)
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return rep, fmt.Errorf("footprint: %w", err)
	}
	ms, err := parseMappings(f)
	f.Close()
	if err != nil {
		return rep, fmt.Errorf("footprint: /proc/self/smaps: %w", err)
	}
	targets := releasable(ms, exe)
	if len(targets) == 0 {
		return rep, fmt.Errorf("footprint: no clean read-only mapping of %s in /proc/self/smaps", exe)
	}
	errs := advise(&rep, targets, madvise)
	debug.FreeOSMemory()
	after, err := readUsage()
	rep.After = after
	return rep, errors.Join(append(errs, err)...)
}

// advise applies Cold, then DontNeed to targets through madv, recording in rep what was taken. EINVAL on
// Cold (a kernel before 5.4) skips it; any other error is returned, and the other mappings are still
// advised.
func advise(rep *Report, targets []mapping, madv func(addr, length uint64, advice uintptr) error) []error {
	steps := []struct {
		advice   Advice
		value    uintptr
		optional bool // EINVAL: a kernel before 5.4
	}{
		{Cold, madvCold, true},
		{DontNeed, syscall.MADV_DONTNEED, false},
	}
	var errs []error
	for _, s := range steps {
		taken := false
		for _, m := range targets {
			err := madv(m.start, m.end-m.start, s.value)
			if s.optional && errors.Is(err, syscall.EINVAL) {
				break
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("footprint: %s on %s %x-%x: %w", s.advice, m.perms, m.start, m.end, err))
				continue
			}
			taken = true
			if s.advice == DontNeed {
				rep.Mappings++
				rep.AdvisedBytes += int64(m.end - m.start)
				rep.ResidentBytes += m.rssKiB << 10
			}
		}
		if taken {
			rep.Advice = append(rep.Advice, s.advice)
		}
	}
	return errs
}

// madvCold is MADV_COLD, which package syscall lacks (include/uapi/asm-generic/mman-common.h, and the
// same in every architecture's own mman.h).
const madvCold = 20

func madvise(addr, length uint64, advice uintptr) error {
	if _, _, e := syscall.Syscall(syscall.SYS_MADVISE, uintptr(addr), uintptr(length), advice); e != 0 {
		return e
	}
	return nil
}

func readUsage() (Usage, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return Usage{}, fmt.Errorf("footprint: %w", err)
	}
	defer f.Close()
	u, err := parseStatus(f)
	if err != nil {
		return Usage{}, fmt.Errorf("footprint: /proc/self/status: %w", err)
	}
	return u, nil
}
