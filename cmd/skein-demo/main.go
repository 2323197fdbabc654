// Command skein-demo is the bundled demo application of the local mesh, one
// binary for its four workloads (see demo/manifests/demo.yaml):
//
//	skein-demo web      [--addr=:8080] [--emoji-addr=HOST:PORT] [--voting-addr=HOST:PORT]
//	skein-demo emoji    [--addr=:8080]
//	skein-demo voting   [--addr=:8080]
//	skein-demo vote-bot [--target=HOST:PORT] [--rate=10] [--requests=0] [--report-interval=10s]
//
// It only parses flags; the demo is in the packages under demo/.
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
	"slices"
	"syscall"

	"github.com/skeinmesh/skein/demo/emoji"
	"github.com/skeinmesh/skein/demo/votebot"
	"github.com/skeinmesh/skein/demo/voting"
	"github.com/skeinmesh/skein/demo/web"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stderr))
}

// command is one subcommand: its flags, and what to run once they are
// parsed.
type command struct {
	name, summary string
	flags         func(fs *flag.FlagSet) (run func(context.Context) error)
}

var commands = []command{
	{"web", "HTTP front end: a page at / and a JSON API calling emoji and voting", webFlags},
	{"emoji", "gRPC catalogue of emoji (List, Find)", emojiFlags},
	{"voting", "gRPC ballot box (Vote, Results); votes for " + voting.SoldOut + " fail", votingFlags},
	{"vote-bot", "traffic generator calling web with a fixed mix", voteBotFlags},
}

func run(ctx context.Context, args []string, stderr io.Writer) int {
	start, code := parse(args, stderr)
	if start == nil {
		return code
	}
	if err := start(ctx); err != nil {
		slog.Error("stopped", "err", err)
		return 1
	}
	return 0
}

// parse parses the command line and sets up logging. It returns what to run,
// or nil and the exit code when there is nothing to run (help, bad flags).
func parse(args []string, stderr io.Writer) (start func(context.Context) error, code int) {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return nil, 2
		}
		return nil, 0
	}
	i := slices.IndexFunc(commands, func(c command) bool { return c.name == args[0] })
	if i < 0 {
		fmt.Fprintf(stderr, "skein-demo: unknown command %q\n", args[0])
		usage(stderr)
		return nil, 2
	}
	c := commands[i]
	fs := flag.NewFlagSet("skein-demo "+c.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	verbose := fs.Bool("verbose", false, "log at debug level")
	start = c.flags(fs)
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, 0
		}
		return nil, 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "skein-demo %s: unexpected arguments %q\n", c.name, fs.Args())
		return nil, 2
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})).With("app", c.name))
	return start, 0
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: skein-demo COMMAND [flags]   (skein-demo COMMAND -h for its flags)")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
}

func webFlags(fs *flag.FlagSet) func(context.Context) error {
	cfg := web.DefaultConfig()
	fs.StringVar(&cfg.Addr, "addr", cfg.Addr, "HTTP listen address")
	fs.StringVar(&cfg.EmojiAddr, "emoji-addr", cfg.EmojiAddr, "emoji service host:port")
	fs.StringVar(&cfg.VotingAddr, "voting-addr", cfg.VotingAddr, "voting service host:port")
	return func(ctx context.Context) error { return web.ListenAndServe(ctx, cfg) }
}

func emojiFlags(fs *flag.FlagSet) func(context.Context) error {
	addr := fs.String("addr", ":8080", "gRPC listen address")
	return func(ctx context.Context) error { return emoji.ListenAndServe(ctx, *addr) }
}

func votingFlags(fs *flag.FlagSet) func(context.Context) error {
	addr := fs.String("addr", ":8080", "gRPC listen address")
	return func(ctx context.Context) error { return new(voting.Server).ListenAndServe(ctx, *addr) }
}

func voteBotFlags(fs *flag.FlagSet) func(context.Context) error {
	cfg := votebot.DefaultConfig()
	fs.StringVar(&cfg.Target, "target", cfg.Target, "web's host:port")
	fs.Float64Var(&cfg.Rate, "rate", cfg.Rate, "requests per second")
	fs.IntVar(&cfg.Requests, "requests", cfg.Requests, "stop after this many requests (0: run until interrupted)")
	fs.DurationVar(&cfg.ReportInterval, "report-interval", cfg.ReportInterval, "how often to log a summary")
	return func(ctx context.Context) error {
		_, err := votebot.Run(ctx, cfg)
		return err
	}
}
