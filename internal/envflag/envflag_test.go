package envflag

import (
	"flag"
	"testing"
)

func TestEnvironmentSetsFlagsTheCommandLineDidNot(t *testing.T) {
	t.Setenv("SKEIN_TEST_MODE", "tproxy")
	t.Setenv("SKEIN_TEST_LOG_LEVEL", "debug")
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	mode := fs.String("mode", "redirect", "")
	level := fs.String("log-level", "info", "")
	other := fs.String("other", "default", "")
	if err := fs.Parse([]string{"-log-level", "warn"}); err != nil {
		t.Fatal(err)
	}
	if err := Apply(fs, "SKEIN_TEST"); err != nil {
		t.Fatal(err)
	}
	if *mode != "tproxy" || *level != "warn" || *other != "default" {
		t.Errorf("mode=%q log-level=%q other=%q; want tproxy (env), warn (flag wins), default", *mode, *level, *other)
	}
}

func TestBadValueNamesTheVariable(t *testing.T) {
	t.Setenv("SKEIN_TEST_TIMEOUT", "soon")
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.Duration("timeout", 0, "")
	fs.Parse(nil)
	if err := Apply(fs, "SKEIN_TEST"); err == nil || err.Error()[:18] != "SKEIN_TEST_TIMEOUT" {
		t.Errorf("got %v, want an error naming SKEIN_TEST_TIMEOUT", err)
	}
}
