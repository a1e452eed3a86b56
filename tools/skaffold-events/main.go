// Command skaffold-events drives Skaffold's own event emitters (pkg/skaffold/event
// and pkg/skaffold/event/v2 of the Skaffold pinned in go.mod) through the calls
// Skaffold's runner makes in the situations of skaffold-exporter's issue 9, and
// writes Skaffold's event log files the way `--event-log-file` does
// (event.SaveEventsToFile, eventV2.SaveEventsToFile).
//
//	skaffold-events -scenario NAME -out FILE    # writes FILE and FILE.v2
//
// Everything Skaffold derives itself comes from its code: the v2 iteration
// counter, task and subtask ids, StatusCodes (ActionableErr / ActionableErrV2, the
// build problem catalog, DevLoopFailedInPhase's state codes), entry texts,
// timestamps and the JSON. What this program decides is the order and the
// outcomes of the calls, transcribed from the Skaffold functions each helper names;
// nothing runs a cluster or a builder. One Skaffold process per run: the handlers
// are package-level.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	// Their problem catalogs (build/build_problems.go, deploy/deploy_problems.go)
	// register in init(): they give the StatusCodes of build and deploy errors, e.g.
	// BUILD_CANCELLED for "context canceled", as in the skaffold binary.
	_ "github.com/GoogleContainerTools/skaffold/v2/pkg/skaffold/build"
	"github.com/GoogleContainerTools/skaffold/v2/pkg/skaffold/constants"
	_ "github.com/GoogleContainerTools/skaffold/v2/pkg/skaffold/deploy"
	sErrors "github.com/GoogleContainerTools/skaffold/v2/pkg/skaffold/errors"
	"github.com/GoogleContainerTools/skaffold/v2/pkg/skaffold/event"
	eventV2 "github.com/GoogleContainerTools/skaffold/v2/pkg/skaffold/event/v2"
	"github.com/GoogleContainerTools/skaffold/v2/pkg/skaffold/instrumentation"
	"github.com/GoogleContainerTools/skaffold/v2/pkg/skaffold/output"
	"github.com/GoogleContainerTools/skaffold/v2/pkg/skaffold/schema/latest"
	proto "github.com/GoogleContainerTools/skaffold/v2/proto/v1"
)

// runCtx stands in for runcontext.RunContext: the little of it the emitters read.
type runCtx struct{ runID string }

func (runCtx) GetKubeContext() string { return "kind-dev" }
func (runCtx) AutoBuild() bool        { return true }
func (runCtx) AutoDeploy() bool       { return true }
func (runCtx) AutoSync() bool         { return true }
func (c runCtx) GetRunID() string     { return c.runID }
func (runCtx) GetPipelines() []latest.Pipeline {
	docker := latest.ArtifactType{DockerArtifact: &latest.DockerArtifact{DockerfilePath: "Dockerfile"}}
	return []latest.Pipeline{{
		Build: latest.BuildConfig{
			Artifacts: []*latest.Artifact{
				{ImageName: "web", Workspace: "web", ArtifactType: docker},
				{ImageName: "app", Workspace: "app", ArtifactType: docker},
			},
			BuildType: latest.BuildType{LocalBuild: &latest.LocalBuild{}},
		},
		Deploy: latest.DeployConfig{DeployType: latest.DeployType{KubectlDeploy: &latest.KubectlDeploy{}}},
	}}
}

const platforms = "linux/amd64"

// skaffold is one Skaffold process running `skaffold dev`.
type skaffold struct {
	cfg       runCtx
	iteration int // the runner's devIteration (v1)
	out       io.Writer
	iterative bool // --iterative-status-check (or deploy hooks)
}

func pause() { time.Sleep(40 * time.Millisecond) }

// newRunner: runner/new.go NewForConfig (a new runner: at start, and after a config
// reload in cmd/skaffold/app/cmd/dev.go runDev).
func (s *skaffold) newRunner(runID string) {
	s.cfg = runCtx{runID: runID}
	s.iteration = 0
	event.InitializeState(s.cfg)
	event.LogMetaEvent()
	eventV2.InitializeState(s.cfg)
	eventV2.LogMetaEvent()
	pause()
}

// loopStart: the start of runner/dev.go Dev and doDev (which also meters the
// iteration's intent: `sync`, `build` or `deploy`).
func (s *skaffold) loopStart(intent string) {
	if s.iteration > 0 {
		instrumentation.AddDevIteration(intent)
	}
	event.DevLoopInProgress(s.iteration)
	eventV2.InitializeState(s.cfg)
	eventV2.TaskInProgress(constants.DevLoop, "")
	eventV2.LogMetaEvent()
	pause()
}

// loopEnd: DevLoopComplete / TaskSucceeded at the end of Dev and doDev.
func (s *skaffold) loopEnd() {
	event.DevLoopComplete(s.iteration)
	eventV2.TaskSucceeded(constants.DevLoop)
	s.iteration++
	pause()
}

// loopFailed: a phase's error returned to Dev / doDev.
func (s *skaffold) loopFailed(phase constants.Phase, err error) {
	event.DevLoopFailedInPhase(s.iteration, phase, err)
	eventV2.TaskFailed(constants.DevLoop, err)
	s.iteration++
	pause()
}

type buildOutcome int

const (
	built buildOutcome = iota
	failed
	cancelledWhileBuilding
	cancelledWhileWaiting
	cacheHit
)

// build: runner/build.go Build, build/cache (lookups), build/scheduler.go (each
// artifact; sequential, as with the default local concurrency of 1). Returns the
// scheduler's error.
func (s *skaffold) build(artifacts []string, outcomes []buildOutcome) error {
	event.ResetStateOnBuild()
	eventV2.TaskInProgress(constants.Build, "Build containers")
	for i, a := range artifacts {
		eventV2.CacheCheckInProgress(a, platforms)
		if outcomes[i] == cacheHit {
			eventV2.CacheCheckHit(a, platforms)
		} else {
			eventV2.CacheCheckMiss(a, platforms)
		}
	}
	var first error
	for i, a := range artifacts {
		switch outcomes[i] {
		case cacheHit:
			continue
		case cancelledWhileWaiting:
			// scheduler.build: waitForDependencies returned context.Canceled.
			event.BuildCanceled(a, platforms)
			eventV2.BuildCanceled(a, platforms, context.Canceled)
			if first == nil {
				first = context.Canceled
			}
			continue
		}
		event.BuildInProgress(a, platforms)
		eventV2.BuildInProgress(a, platforms)
		pause()
		switch outcomes[i] {
		case built:
			event.BuildComplete(a, platforms)
			eventV2.BuildSucceeded(a, platforms)
		case failed:
			err := fmt.Errorf("docker build: exit status 1")
			event.BuildFailed(a, platforms, err)
			eventV2.BuildFailed(a, platforms, err)
			if first == nil {
				first = fmt.Errorf("build [%s] failed: %w", a, err)
			}
		case cancelledWhileBuilding:
			// Ctrl-C: the builder returns the context's error; v1 reports it failed.
			err := fmt.Errorf("docker build: %w", context.Canceled)
			event.BuildFailed(a, platforms, err)
			eventV2.BuildCanceled(a, platforms, err)
			if first == nil {
				first = err
			}
		}
	}
	if first != nil {
		event.BuildSequenceFailed(first)
		eventV2.TaskFailed(constants.Build, first)
		return first
	}
	eventV2.TaskSucceeded(constants.Build)
	return nil
}

// test: runner/test.go Test, test/test_factory.go runTests, test/custom Test (one
// tester per entry of `pass`).
func (s *skaffold) test(pass []bool) error {
	event.ResetStateOnTest() // doDev, before runner.Test
	eventV2.TaskInProgress(constants.Test, "Test")
	for id, ok := range pass {
		eventV2.TesterInProgress(id)
		event.TestInProgress()
		pause()
		if !ok {
			err := errors.New("command \"./test.sh\" finished with non-0 exit code: exit status 1")
			event.TestFailed("web", err)
			eventV2.TesterFailed(id, err)
			err = fmt.Errorf("running tests: %w", err)
			eventV2.TaskFailed(constants.Test, err)
			return err
		}
		event.TestComplete()
		eventV2.TesterSucceeded(id)
	}
	eventV2.TaskSucceeded(constants.Test)
	return nil
}

// statusCheck: kubernetes/status/status_check.go check, statusCheck,
// printStatus, printStatusCheckSummary (one deployment, fail-fast).
func (s *skaffold) statusCheck(code proto.StatusCode) error {
	event.StatusCheckEventStarted()
	eventV2.TaskInProgress(constants.StatusCheck, "Status Checking Deployed Artifacts")
	const r = "deployment/web"
	pending := &proto.ActionableErr{ErrCode: proto.StatusCode_STATUSCHECK_DEPLOYMENT_ROLLOUT_PENDING,
		Message: "Waiting for deployment \"web\" rollout to finish: 0 of 1 updated replicas are available..."}
	pause()
	event.ResourceStatusCheckEventUpdated(r, pending)
	eventV2.ResourceStatusCheckEventUpdated(r, sErrors.V2fromV1(pending))
	pause()
	if code == proto.StatusCode_STATUSCHECK_USER_CANCELLED {
		// Ctrl-C: pollResourceStatus marks the resource cancelled, markProcessed
		// counts it cancelled, printStatusCheckSummary sends nothing for it, and
		// getSkaffoldDeployStatus reports every check cancelled with this code.
		err := fmt.Errorf("%d/%d deployment(s) status check cancelled", 1, 1)
		event.StatusCheckEventEnded(code, err)
		eventV2.TaskFailed(constants.StatusCheck, err)
		return err
	}
	if code == proto.StatusCode_STATUSCHECK_SUCCESS {
		ae := &proto.ActionableErr{ErrCode: code}
		event.ResourceStatusCheckEventCompleted(r, ae)
		eventV2.ResourceStatusCheckEventCompleted(r, sErrors.V2fromV1(ae))
		event.StatusCheckEventEnded(code, nil)
		eventV2.TaskSucceeded(constants.StatusCheck)
		return nil
	}
	ae := &proto.ActionableErr{ErrCode: code, Message: "container web is waiting to start: web:abc can't be pulled"}
	event.ResourceStatusCheckEventCompleted(r, ae)
	eventV2.ResourceStatusCheckEventCompleted(r, sErrors.V2fromV1(ae))
	// getSkaffoldDeployStatus: fail-fast keeps the first failed resource's code.
	err := fmt.Errorf("%d/%d deployment(s) failed", 1, 1)
	event.StatusCheckEventEnded(code, err)
	eventV2.TaskFailed(constants.StatusCheck, err)
	return err
}

// deploy: runner/deploy.go Deploy with deploy/deploy_mux.go Deploy (one kubectl
// deployer). `check` is the status check's outcome.
func (s *skaffold) deploy(check proto.StatusCode) error {
	event.ResetStateOnDeploy()
	event.DeployInProgress()
	eventV2.TaskInProgress(constants.Deploy, "Deploy to cluster")
	eventV2.DeployInProgress(0)
	pause()
	if s.iterative {
		if err := s.statusCheck(check); err != nil {
			eventV2.DeployFailed(0, err)
			event.DeployFailed(err)
			eventV2.TaskFailed(constants.Deploy, err)
			return err
		}
	}
	eventV2.DeploySucceeded(0)
	event.DeployComplete()
	if !s.iterative {
		if err := s.statusCheck(check); err != nil {
			eventV2.TaskFailed(constants.Deploy, err)
			return err
		}
	}
	eventV2.TaskSucceeded(constants.Deploy)
	return nil
}

// sync: runner/dev.go doDev's retry loop around getSyncHandler (1 + 3 retries;
// the backoff's waits shortened). failures: attempts that fail, at most 4.
func (s *skaffold) sync(image string, files, failures int) {
	for attempt := 0; attempt < 4; attempt++ {
		output.Default.Fprintf(s.out, "Syncing %d files for %s\n", files, image)
		event.FileSyncInProgress(files, image)
		pause()
		if attempt >= failures {
			event.FileSyncSucceeded(files, image)
			return
		}
		err := errors.New("copying files: exit status 1")
		event.FileSyncFailed(files, image, err)
		event.DevLoopFailedInPhase(s.iteration, constants.Sync, err)
		eventV2.TaskFailed(constants.DevLoop, err)
		pause()
	}
}

// initial: Dev's first iteration (build, test, deploy, then watching).
func (s *skaffold) initial(outcomes []buildOutcome) {
	s.loopStart("")
	if err := s.build([]string{"web", "app"}, outcomes); err != nil {
		s.loopFailed(constants.Build, err)
		return
	}
	if err := s.deploy(proto.StatusCode_STATUSCHECK_SUCCESS); err != nil {
		s.loopFailed(constants.Deploy, err)
		return
	}
	s.loopEnd()
}

// rebuild: a doDev iteration that builds `outcomes`, then tests and deploys.
func (s *skaffold) rebuild(outcomes []buildOutcome, tests []bool, check proto.StatusCode) {
	s.loopStart("build")
	if err := s.build([]string{"web", "app"}, outcomes); err != nil {
		s.loopFailed(constants.Build, err)
		return
	}
	if tests != nil {
		if err := s.test(tests); err != nil {
			s.loopFailed(constants.Test, err)
			return
		}
	}
	if err := s.deploy(check); err != nil {
		s.loopFailed(constants.Deploy, err)
		return
	}
	s.loopEnd()
}

var scenarios = map[string]func(s *skaffold){
	"sync-retries": func(s *skaffold) {
		s.initial([]buildOutcome{built, built})
		s.loopStart("sync")
		s.sync("web:v1", 2, 4) // v2.17+: go on after the last failed attempt
		s.loopEnd()
		s.loopStart("sync")
		s.sync("web:v1", 1, 1) // the retry succeeds
		s.loopEnd()
	},
	"reload": func(s *skaffold) {
		s.initial([]buildOutcome{built, built})
		s.loopStart("sync")
		s.sync("web:v1", 1, 0)
		s.loopEnd()
		// skaffold.yaml changed: doDev returns ErrorConfigurationChanged before any
		// event; runDev creates a new runner.
		s.newRunner("run-after-reload")
		s.initial([]buildOutcome{cacheHit, cacheHit})
		s.rebuild([]buildOutcome{built, cacheHit}, nil, proto.StatusCode_STATUSCHECK_SUCCESS)
	},
	"cancelled-builds": func(s *skaffold) {
		s.initial([]buildOutcome{built, built})
		// app waits for web; web fails.
		s.rebuild([]buildOutcome{failed, cancelledWhileWaiting}, nil, proto.StatusCode_STATUSCHECK_SUCCESS)
		// Ctrl-C while web builds; app waits for it.
		s.rebuild([]buildOutcome{cancelledWhileBuilding, cancelledWhileWaiting}, nil, proto.StatusCode_STATUSCHECK_SUCCESS)
	},
	"tests": func(s *skaffold) {
		s.initial([]buildOutcome{built, built})
		s.rebuild([]buildOutcome{built, cacheHit}, []bool{true, true}, proto.StatusCode_STATUSCHECK_SUCCESS)
		s.rebuild([]buildOutcome{built, cacheHit}, []bool{}, proto.StatusCode_STATUSCHECK_SUCCESS)
		s.rebuild([]buildOutcome{built, cacheHit}, []bool{false}, proto.StatusCode_STATUSCHECK_SUCCESS)
	},
	"status-checks": func(s *skaffold) {
		s.initial([]buildOutcome{built, built})
		s.rebuild([]buildOutcome{built, cacheHit}, nil, proto.StatusCode_STATUSCHECK_IMAGE_PULL_ERR)
		s.iterative = true
		s.rebuild([]buildOutcome{built, cacheHit}, nil, proto.StatusCode_STATUSCHECK_SUCCESS)
		s.rebuild([]buildOutcome{built, cacheHit}, nil, proto.StatusCode_STATUSCHECK_IMAGE_PULL_ERR)
	},
	"cancelled-status-check": func(s *skaffold) {
		s.initial([]buildOutcome{built, built})
		// Ctrl-C while the rollout is pending; Skaffold then exits.
		s.rebuild([]buildOutcome{built, cacheHit}, nil, proto.StatusCode_STATUSCHECK_USER_CANCELLED)
	},
}

func main() {
	name := flag.String("scenario", "", "which session to play")
	out := flag.String("out", "", "event log file to write (and FILE.v2)")
	flag.Parse()
	play, ok := scenarios[*name]
	if !ok || *out == "" {
		fmt.Fprintln(os.Stderr, "usage: skaffold-events -scenario NAME -out FILE")
		for n := range scenarios {
			fmt.Fprintln(os.Stderr, "  scenario:", n)
		}
		os.Exit(2)
	}
	s := &skaffold{out: output.GetWriter(context.Background(), io.Discard, output.DefaultColorCode, false, false)}
	s.newRunner("run-" + *name)
	play(s)
	// The handlers log each event on their own goroutine: let the last one land.
	time.Sleep(200 * time.Millisecond)
	for _, f := range []string{*out, *out + ".v2"} {
		_ = os.Remove(f) // SaveEventsToFile appends
	}
	if err := event.SaveEventsToFile(*out); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := eventV2.SaveEventsToFile(*out + ".v2"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
