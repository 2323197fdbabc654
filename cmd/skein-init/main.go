// Command skein-init programs one workload's network namespace so that its
// TCP traffic passes through the skein-proxy sidecar (see
// internal/netfilter). It runs once per workload, before the application
// and the proxy start, with CAP_NET_ADMIN in the workload's namespace.
//
//	skein-init                      # redirect mode with the default ports
//	skein-init --mode=tproxy --skip-inbound-ports=4190,5000-5010
//	skein-init --dry-run            # print the commands, change nothing
//	skein-init --cleanup            # remove everything skein-init added
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/skeinmesh/skein/internal/netfilter"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// options are the flags that are not part of netfilter.Config.
type options struct {
	netns   string
	dryRun  bool
	cleanup bool
	verbose bool
}

// flagOfField names the flag behind each Config field, for errors.
var flagOfField = map[string]string{
	"ProxyUID":          "--proxy-uid",
	"OutboundPort":      "--outbound-port",
	"InboundPort":       "--inbound-port",
	"AdminPort":         "--admin-port",
	"SkipInboundPorts":  "--skip-inbound-ports",
	"SkipOutboundPorts": "--skip-outbound-ports",
	"SkipOutboundCIDRs": "--skip-outbound-cidrs",
	"Mode":              "--mode",
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, opts, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	level := slog.LevelInfo
	if opts.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if err != nil {
		log.Error("invalid flags", "err", err)
		return 2
	}
	if err := execute(ctx, cfg, opts, stdout, log); err != nil {
		log.Error("skein-init failed", "err", err)
		return 1
	}
	return 0
}

func parseFlags(args []string, stderr io.Writer) (netfilter.Config, options, error) {
	cfg := netfilter.DefaultConfig()
	var opts options
	var mode, skipIn, skipOut, skipCIDRs string
	fs := flag.NewFlagSet("skein-init", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&cfg.ProxyUID, "proxy-uid", cfg.ProxyUID, "uid the proxy runs as; its traffic is never redirected")
	fs.IntVar(&cfg.OutboundPort, "outbound-port", cfg.OutboundPort, "proxy port for the workload's outgoing TCP")
	fs.IntVar(&cfg.InboundPort, "inbound-port", cfg.InboundPort, "proxy port for incoming TCP")
	fs.IntVar(&cfg.AdminPort, "admin-port", cfg.AdminPort, "proxy admin port, never redirected")
	fs.StringVar(&skipIn, "skip-inbound-ports", "", "incoming ports that reach the workload directly, e.g. 4190,5000-5010")
	fs.StringVar(&skipOut, "skip-outbound-ports", "", "outgoing ports that bypass the proxy, e.g. 3306,25")
	fs.StringVar(&skipCIDRs, "skip-outbound-cidrs", "", "destinations that bypass the proxy, e.g. 10.0.0.0/8,fd00::/8")
	fs.StringVar(&mode, "mode", string(cfg.Mode), "inbound capture: redirect (nat REDIRECT) or tproxy (keeps client source IPs)")
	fs.BoolVar(&cfg.IPv6, "ipv6", cfg.IPv6, "also program ip6tables")
	fs.StringVar(&opts.netns, "netns", "", "named network namespace to program (`ip netns list`); default: this process's own")
	fs.BoolVar(&opts.dryRun, "dry-run", false, "print the commands instead of running them")
	fs.BoolVar(&opts.cleanup, "cleanup", false, "remove the rules instead of adding them")
	fs.BoolVar(&opts.verbose, "v", false, "log every command run")
	if err := fs.Parse(args); err != nil {
		return cfg, opts, err
	}
	if fs.NArg() > 0 {
		return cfg, opts, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	cfg.Mode = netfilter.Mode(mode)
	var err error
	if cfg.SkipInboundPorts, err = netfilter.ParsePortRanges(skipIn); err != nil {
		return cfg, opts, fmt.Errorf("--skip-inbound-ports: %w", err)
	}
	if cfg.SkipOutboundPorts, err = netfilter.ParsePortRanges(skipOut); err != nil {
		return cfg, opts, fmt.Errorf("--skip-outbound-ports: %w", err)
	}
	if cfg.SkipOutboundCIDRs, err = netfilter.ParseCIDRs(skipCIDRs); err != nil {
		return cfg, opts, fmt.Errorf("--skip-outbound-cidrs: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		var fe *netfilter.FieldError
		if errors.As(err, &fe) {
			return cfg, opts, fmt.Errorf("%s: %w", flagOfField[fe.Field], fe.Err)
		}
		return cfg, opts, err
	}
	return cfg, opts, nil
}

func execute(ctx context.Context, cfg netfilter.Config, opts options, stdout io.Writer, log *slog.Logger) error {
	var plan *netfilter.Plan
	var err error
	if opts.cleanup {
		plan, err = netfilter.PlanCleanup(ctx, opts.netns, cfg.IPv6)
	} else {
		plan, err = netfilter.PlanApply(ctx, opts.netns, cfg)
	}
	if opts.dryRun {
		if err != nil && !opts.cleanup {
			// Without privileges the current rules cannot be read: show what
			// a namespace without our rules would get.
			log.Warn("cannot read current rules; showing the script for an empty namespace", "err", err)
			script, renderErr := netfilter.Render(cfg)
			if renderErr != nil {
				return renderErr
			}
			_, err = io.WriteString(stdout, script)
			return err
		}
		if err != nil {
			return err
		}
		_, err = io.WriteString(stdout, plan.String())
		return err
	}
	if err != nil {
		return err
	}
	if err := plan.Run(ctx, log); err != nil {
		return err
	}
	log.Info("netfilter rules updated", "cleanup", opts.cleanup, "mode", cfg.Mode, "netns", opts.netns,
		"proxy_uid", cfg.ProxyUID, "inbound_port", cfg.InboundPort, "outbound_port", cfg.OutboundPort)
	return nil
}
