// One rank of a job: joins the rendezvous, builds the world communicator, and runs the work: the
// training run, or the communication self-test.
#pragma once

#include <iosfwd>

#include "exec/launch/environment.h"
#include "exec/launch/options.h"
#include "exec/train/training_run.h"

namespace zp::exec::launch {

using exec::TrainingOptions;

// The training flags of `options`.
TrainingOptions training_options(const ExecOptions& options);

// UserError when --device cuda asks for a GPU that this build or this machine does not have.
void check_device(const ExecOptions& options, int local_rank);

// Returns the exit status; failures are thrown (UserError, comm::CommError,
// comm::SelftestFailure) for main() to report in one line.
int run_rank(const ExecOptions& options, const RankEnvironment& env, std::ostream& out);

}  // namespace zp::exec::launch
