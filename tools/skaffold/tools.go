//go:build tools

// Package tools pins Skaffold for the real-Skaffold tests (scripts/real-skaffold.sh).
// Skaffold's own go.mod has replace and exclude directives, so
// `go install .../cmd/skaffold@v2.24.0` is refused; this module requires it and copies
// those pins (go.mod below) so `scripts/build-tool.sh skaffold
// github.com/GoogleContainerTools/skaffold/v2/cmd/skaffold` builds it from the Go
// module proxy alone.
package tools

import _ "github.com/GoogleContainerTools/skaffold/v2/cmd/skaffold"
