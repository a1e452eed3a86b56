//go:build tools

// Package tools pins Prometheus 3 (its Go module versions are v0.3xx for the
// 3.x releases); scripts/build-tool.sh builds cmd/prometheus and cmd/promtool
// from it.
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/prometheus"
	_ "github.com/prometheus/prometheus/cmd/promtool"
)
