package netfilter

import (
	"slices"
	"strings"
)

// savedTable is one table as iptables-save printed it.
type savedTable struct {
	chains map[string]bool
	rules  []string // "-A CHAIN ..." lines, in order
}

// parseSave reads the output of `iptables-save -t TABLE`.
func parseSave(out string) savedTable {
	t := savedTable{chains: map[string]bool{}}
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, ":"):
			name, _, _ := strings.Cut(line[1:], " ")
			t.chains[name] = true
		case strings.HasPrefix(line, "-A "):
			t.rules = append(t.rules, line)
		}
	}
	return t
}

// ruleChain and ruleTarget take apart a saved "-A CHAIN ... -j TARGET" line.
func ruleChain(rule string) string {
	fields := strings.Fields(rule)
	if len(fields) < 2 {
		return ""
	}
	return fields[1]
}

func ruleTarget(rule string) string {
	fields := strings.Fields(rule)
	for i := 0; i+1 < len(fields); i++ {
		if fields[i] == "-j" || fields[i] == "-g" {
			return fields[i+1]
		}
	}
	return ""
}

// tableScript returns the iptables-restore section that turns table's
// current state into want (nil want: none of ours), or "" when nothing is
// ours and nothing should be. Our chains are always flushed and refilled,
// jumps are added only when missing, and every other reference to our
// chains (duplicates, jumps of another mode) is deleted. Rules that are not
// ours and do not point at our chains are never mentioned.
func tableScript(table string, current savedTable, want tableRules) string {
	own := ownChains[table]
	wanted := map[string]bool{}
	for _, c := range want.chains {
		wanted[c.name] = true
	}
	var declare, remove []string
	for _, name := range own {
		if wanted[name] || current.chains[name] {
			declare = append(declare, ":"+name+" - [0:0]")
		}
		if current.chains[name] && !wanted[name] {
			remove = append(remove, "-X "+name)
		}
	}
	if len(declare) == 0 {
		return ""
	}

	var deletes, adds []string
	kept := map[string]bool{}
	for _, rule := range current.rules {
		if slices.Contains(own, ruleChain(rule)) || !slices.Contains(own, ruleTarget(rule)) {
			continue // inside our chains (flushed anyway), or not about us
		}
		if slices.ContainsFunc(want.jumps, func(j jump) bool { return j.rule() == rule }) && !kept[rule] {
			kept[rule] = true
			continue
		}
		deletes = append(deletes, "-D"+strings.TrimPrefix(rule, "-A"))
	}
	for _, c := range want.chains {
		for _, r := range c.rules {
			adds = append(adds, "-A "+c.name+" "+r)
		}
	}
	for _, j := range want.jumps {
		if !kept[j.rule()] {
			adds = append(adds, j.rule())
		}
	}

	var b strings.Builder
	b.WriteString("*" + table + "\n")
	for _, lines := range [][]string{declare, deletes, adds, remove} {
		for _, l := range lines {
			b.WriteString(l + "\n")
		}
	}
	b.WriteString("COMMIT\n")
	return b.String()
}
