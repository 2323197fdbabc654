package netfilter

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os/exec"
	"strings"
)

// Plan is the exact list of commands that Apply or Cleanup runs, computed
// from the namespace's current state. Print it for a dry run, or Run it.
type Plan struct {
	namespace string
	steps     []step
}

// step is one command: an iptables-restore with its script, or an ip command.
type step struct {
	args  []string
	stdin string
}

// PlanApply reads the current ruleset of the network namespace (the one
// this process runs in when namespace is "", else the one `ip netns exec
// namespace` enters) and returns the commands that program cfg into it.
func PlanApply(ctx context.Context, namespace string, cfg Config) (*Plan, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return plan(ctx, namespace, cfg.families(), func(f family) (map[string]tableRules, bool) {
		return desiredRules(cfg, f), cfg.Mode == ModeTProxy
	})
}

// PlanCleanup returns the commands that remove everything any Apply may
// have added (in either mode), leaving all other rules alone.
func PlanCleanup(ctx context.Context, namespace string, ipv6 bool) (*Plan, error) {
	families := []family{ipv4}
	if ipv6 {
		families = append(families, ipv6Family)
	}
	return plan(ctx, namespace, families, func(family) (map[string]tableRules, bool) { return nil, false })
}

// Render returns the script Apply would run in a namespace with no rules of
// ours yet. It reads nothing and needs no privileges.
func Render(cfg Config) (string, error) {
	if err := cfg.Validate(); err != nil {
		return "", err
	}
	p := &Plan{}
	for _, f := range cfg.families() {
		p.addFamily(f, desiredRules(cfg, f), cfg.Mode == ModeTProxy, map[string]savedTable{}, routingState{})
	}
	return p.String(), nil
}

// Apply programs cfg into the namespace; see PlanApply.
func Apply(ctx context.Context, namespace string, cfg Config, log *slog.Logger) error {
	p, err := PlanApply(ctx, namespace, cfg)
	if err != nil {
		return err
	}
	return p.Run(ctx, log)
}

// Cleanup removes what Apply added; see PlanCleanup.
func Cleanup(ctx context.Context, namespace string, ipv6 bool, log *slog.Logger) error {
	p, err := PlanCleanup(ctx, namespace, ipv6)
	if err != nil {
		return err
	}
	return p.Run(ctx, log)
}

type wantFunc func(family) (tables map[string]tableRules, routing bool)

func plan(ctx context.Context, namespace string, families []family, want wantFunc) (*Plan, error) {
	p := &Plan{namespace: namespace}
	for _, f := range families {
		current := map[string]savedTable{}
		for _, table := range tables {
			out, err := p.output(ctx, f.save, "-t", table)
			if err != nil {
				return nil, fmt.Errorf("reading %s %s table: %w", f.name, table, err)
			}
			current[table] = parseSave(out)
		}
		rulesJSON, err := p.output(ctx, "ip", f.ipFlag, "-j", "rule", "show")
		if err != nil {
			return nil, fmt.Errorf("reading %s routing rules: %w", f.name, err)
		}
		routesJSON, err := p.output(ctx, "ip", f.ipFlag, "-j", "route", "show", "table", "all")
		if err != nil {
			return nil, fmt.Errorf("reading %s routes: %w", f.name, err)
		}
		routing, err := parseRouting(rulesJSON, routesJSON)
		if err != nil {
			return nil, err
		}
		wantTables, wantRouting := want(f)
		p.addFamily(f, wantTables, wantRouting, current, routing)
	}
	return p, nil
}

// addFamily appends the steps for one family: routing first when adding
// it, one iptables-restore for all tables, routing last when removing it.
func (p *Plan) addFamily(f family, want map[string]tableRules, wantRouting bool, current map[string]savedTable, routing routingState) {
	route := routingSteps(f, routing, wantRouting)
	if wantRouting {
		p.steps = append(p.steps, route...)
	}
	var script strings.Builder
	for _, table := range tables {
		script.WriteString(tableScript(table, current[table], want[table]))
	}
	if script.Len() > 0 {
		p.steps = append(p.steps, step{args: []string{f.restore, "--noflush"}, stdin: script.String()})
	}
	if !wantRouting {
		p.steps = append(p.steps, route...)
	}
}

// Empty reports whether the plan changes nothing.
func (p *Plan) Empty() bool { return len(p.steps) == 0 }

// String is the plan as a shell script.
func (p *Plan) String() string {
	var b strings.Builder
	for _, s := range p.steps {
		b.WriteString(strings.Join(p.command(s.args), " "))
		if s.stdin != "" {
			b.WriteString(" <<'EOF'\n" + s.stdin + "EOF")
		}
		b.WriteString("\n")
	}
	return b.String()
}

// Run runs the steps in order and stops at the first failure. Each
// iptables-restore is atomic per table.
func (p *Plan) Run(ctx context.Context, log *slog.Logger) error {
	if log == nil {
		log = slog.Default()
	}
	for _, s := range p.steps {
		if _, err := p.run(ctx, s.stdin, s.args...); err != nil {
			return err
		}
		log.Debug("ran", "command", strings.Join(s.args, " "), "namespace", p.namespace)
	}
	return nil
}

func (p *Plan) command(args []string) []string {
	if p.namespace == "" {
		return args
	}
	return append([]string{"ip", "netns", "exec", p.namespace}, args...)
}

func (p *Plan) output(ctx context.Context, args ...string) (string, error) {
	return p.run(ctx, "", args...)
}

func (p *Plan) run(ctx context.Context, stdin string, args ...string) (string, error) {
	full := p.command(args)
	cmd := exec.CommandContext(ctx, full[0], full[1:]...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s: %w: %s", strings.Join(full, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}
