// grpccapture: the real-Skaffold tests' raw gRPC client and recording proxy
// (main.go). Pinned to the grpc-go that Skaffold v2.24.0 uses (tools/skaffold), so
// the two share Go's build cache.
module github.com/skaffold-exporter/tools/grpccapture

go 1.26.4

require google.golang.org/grpc v1.81.1

require (
	golang.org/x/net v0.55.0 // indirect
	golang.org/x/sys v0.45.0 // indirect
	golang.org/x/text v0.37.0 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20260526163538-3dc84a4a5aaa // indirect
	google.golang.org/protobuf v1.36.12-0.20260120151049-f2248ac996af // indirect
)
