//go:build tools

// Package tools pins Jaeger (the module of the Jaeger v2 releases, a trace
// store built on the OpenTelemetry Collector with OTLP in and a query API);
// scripts/build-tool.sh builds cmd/jaeger from it.
package tools

import _ "github.com/jaegertracing/jaeger/cmd/jaeger"
