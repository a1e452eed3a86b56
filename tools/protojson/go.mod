// The JSON marshaller of Skaffold's HTTP gateway, for the /v1/state tests: the same
// google.golang.org/protobuf version as Skaffold v2.24.0's go.mod pins.
module github.com/skaffold-exporter/tools/protojson

go 1.26.4

require google.golang.org/protobuf v1.36.12-0.20260120151049-f2248ac996af
