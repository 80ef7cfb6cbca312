#include "planner/search.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "core/util/error.h"
#include "sim/simulate.h"
#include "sim/step/decision_memo.h"

namespace zp::planner {

Evaluation evaluate(const RunSpec& run, bool model_allocator, sim::SimCache* cache,
                    sim::DecisionMemo* memo, std::vector<std::int64_t> memo_context) {
  sim::SimOptions options;
  options.model_allocator = model_allocator;
  options.cache = cache;
  options.memo = memo;
  options.memo_context = std::move(memo_context);
  Evaluation e;
  sim::SimulationResult r;
  try {
    r = sim::simulate(run, options);
  } catch (const UserError& error) {
    e.rejected = error.message();
    return e;
  }
  e.step_ns = r.step_time_ns;
  for (const sim::RankReport& rank : r.ranks)
    if (!rank.steps.empty()) e.compute_ns = std::max(e.compute_ns, rank.steps.back().compute_ns);
  for (const sim::RankReport& rank : r.ranks) {
    e.allocated = std::max(e.allocated, rank.peak.allocated);
    e.memory = std::max(e.memory, model_allocator ? rank.peak_reserved : rank.peak.allocated);
    const std::int64_t node_host = rank.peak_host * run.cluster.gpus_per_node;
    if (run.cluster.host_memory > 0 && node_host > run.cluster.host_memory) e.host_fits = false;
    const std::int64_t steps =
        std::max<std::int64_t>(1, static_cast<std::int64_t>(rank.steps.size()));
    e.gathered_bytes = std::max(
        e.gathered_bytes,
        rank.transfers[static_cast<std::size_t>(sim::TransferKind::kAllGather)].bytes / steps);
  }
  return e;
}

namespace {

using Clock = std::chrono::steady_clock;

// Simulates batches of candidates on a fixed set of threads, each with its own copy of the run.
class WorkerPool {
 public:
  WorkerPool(const RunSpec& run, const SearchSpace& space, int workers, bool model_allocator,
             bool share_decisions)
      : base_(run),
        space_(space),
        model_allocator_(model_allocator),
        share_decisions_(share_decisions) {
    const int n = std::max(1, workers);
    for (std::size_t d = 0; d < space.dims.size(); ++d) {
      const std::string_view name = space.dims[d].knob->name;
      if (name == "micro_batch" || name == "pipeline_stages") layout_dims_.push_back(d);
      // What the coordinator alone reads (sim::DecisionMemo): the rest tells runs apart.
      if (name != "max_live_parameters" && name != "max_reuse_distance" &&
          name != "prefetch_bucket_size")
        context_dims_.push_back(d);
    }
    slots_.resize(static_cast<std::size_t>(n));
    for (int i = 1; i < n; ++i)
      threads_.emplace_back([this, i] { loop(i); });
  }
  ~WorkerPool() {
    {
      std::lock_guard lock(mutex_);
      quit_ = true;
    }
    wake_.notify_all();
    for (std::thread& t : threads_)
      t.join();
  }
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  std::int64_t shared_steps() const { return memo_.hits(); }

  std::vector<Evaluation> run(const std::vector<Candidate>& batch) {
    std::vector<Evaluation> out(batch.size());
    if (batch.empty()) return out;
    {
      std::lock_guard lock(mutex_);
      batch_ = &batch;
      out_ = &out;
      next_ = 0;
      busy_ = static_cast<int>(threads_.size());
      ++generation_;
    }
    wake_.notify_all();
    drain(0);
    std::unique_lock lock(mutex_);
    done_.wait(lock, [&] { return busy_ == 0; });
    batch_ = nullptr;
    out_ = nullptr;
    return out;
  }

 private:
  // A run and a simulation cache per worker and layout: a layout's run has its own model tree,
  // built once from the user's run, and a cache is bound to one tree.
  struct Slot {
    RunSpec run;
    sim::SimCache cache;
  };
  Slot& slot(int worker, const Candidate& c) {
    std::vector<std::int32_t> layout;
    for (std::size_t d : layout_dims_)
      layout.push_back(c[d]);
    auto& slots = slots_[static_cast<std::size_t>(worker)];
    auto it = slots.find(layout);
    if (it == slots.end()) {
      auto made = std::make_unique<Slot>(Slot{base_, {}});
      apply(space_, c, made->run);
      it = slots.emplace(std::move(layout), std::move(made)).first;
    }
    return *it->second;
  }

  void drain(int worker) {
    for (;;) {
      const std::size_t i = next_.fetch_add(1);
      if (i >= batch_->size()) return;
      Slot& s = slot(worker, (*batch_)[i]);
      apply(space_, (*batch_)[i], s.run);
      std::vector<std::int64_t> context;
      for (std::size_t d : context_dims_)
        context.push_back((*batch_)[i][d]);
      (*out_)[i] = evaluate(s.run, model_allocator_, &s.cache, share_decisions_ ? &memo_ : nullptr,
                            std::move(context));
    }
  }
  void loop(int worker) {
    std::uint64_t seen = 0;
    for (;;) {
      {
        std::unique_lock lock(mutex_);
        wake_.wait(lock, [&] { return quit_ || generation_ != seen; });
        if (quit_) return;
        seen = generation_;
      }
      drain(worker);
      {
        std::lock_guard lock(mutex_);
        --busy_;
      }
      done_.notify_one();
    }
  }

  const RunSpec& base_;
  const SearchSpace& space_;
  const bool model_allocator_;
  const bool share_decisions_;
  std::vector<std::size_t> layout_dims_;
  std::vector<std::size_t> context_dims_;
  sim::DecisionMemo memo_;  // shared by the workers
  std::vector<std::map<std::vector<std::int32_t>, std::unique_ptr<Slot>>> slots_;  // per worker
  std::vector<std::thread> threads_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  const std::vector<Candidate>* batch_ = nullptr;
  std::vector<Evaluation>* out_ = nullptr;
  std::atomic<std::size_t> next_{0};
  int busy_ = 0;
  std::uint64_t generation_ = 0;
  bool quit_ = false;
};

class Searcher {
 public:
  Searcher(const RunSpec& run, const SearchSpace& space, const SearchOptions& options)
      : space_(space),
        options_(options),
        pool_(run, space, options.workers, options.model_allocator, options.share_decisions),
        start_(Clock::now()),
        last_progress_(start_) {
    const std::size_t n = space.dims.size();
    first_memory_ = first_both_ = n;
    for (std::size_t d = 0; d < n; ++d) {
      const Dimension& dim = space.dims[d];
      const int level = dim.memory_monotone ? (dim.time_monotone ? 2 : 1) : 0;
      ZP_CHECK(level >= (d >= first_both_     ? 2
                         : d >= first_memory_ ? 1
                                              : 0),
               "dimension ", dim.knob->name, " is out of the order the bounds need");
      if (level >= 1) first_memory_ = std::min(first_memory_, d);
      if (level == 2) first_both_ = std::min(first_both_, d);
      const std::string_view name = space.dims[d].knob->name;
      if (name == "checkpoint_interval") interval_dim_ = static_cast<int>(d);
      if (name == "cpu_checkpointing" || name == "partition_activations")
        needs_checkpointing_.push_back(d);
      if (name == "pipeline_stages") pipeline_dim_ = static_cast<int>(d);
      if (name == "partition_method") partition_dim_ = static_cast<int>(d);
    }
  }

  SearchResult run() {
    Candidate root(space_.dims.size(), 0);
    result_.stats.space = subtree_size(0, root);
    if (options_.exhaustive) {
      enumerate_all();
    } else {
      visit(0, root);
      polish();
    }
    finish();
    return std::move(result_);
  }

 private:
  // A dimension that does not act under the candidate's other values (the checkpointing knobs
  // without checkpointing, the partition method without a pipeline) has one value.
  bool inactive(std::size_t d, const Candidate& c) const {
    const auto value_of = [&](int dim) {
      const Dimension& x = space_.dims[static_cast<std::size_t>(dim)];
      return x.values[static_cast<std::size_t>(c[static_cast<std::size_t>(dim)])];
    };
    if (static_cast<int>(d) == partition_dim_ && pipeline_dim_ >= 0)
      return value_of(pipeline_dim_) == 1;
    if (interval_dim_ < 0 || std::find(needs_checkpointing_.begin(), needs_checkpointing_.end(),
                                       d) == needs_checkpointing_.end())
      return false;
    return value_of(interval_dim_) == 0;
  }
  std::int32_t size_of(std::size_t d, const Candidate& c) const {
    return inactive(d, c) ? 1 : static_cast<std::int32_t>(space_.dims[d].size());
  }
  // An inactive dimension's one value: the run's own partition method (its first), or the last
  // value of a checkpointing knob (off).
  std::int32_t index_of(std::size_t d, const Candidate& c, std::int32_t i) const {
    if (!inactive(d, c)) return i;
    return static_cast<int>(d) == partition_dim_
               ? 0
               : static_cast<std::int32_t>(space_.dims[d].size()) - 1;
  }

  // Configurations below a node that fixes dimensions [0, depth).
  double subtree_size(std::size_t depth, Candidate c) const {
    if (depth == space_.dims.size()) return 1;
    // The values of a dimension that switches others on and off are counted one by one.
    if (static_cast<int>(depth) == interval_dim_ || static_cast<int>(depth) == pipeline_dim_) {
      double n = 0;
      for (std::int32_t i = 0; i < size_of(depth, c); ++i) {
        c[depth] = i;
        n += subtree_size(depth + 1, c);
      }
      return n;
    }
    double n = 1;
    for (std::size_t d = depth; d < space_.dims.size(); ++d)
      n *= size_of(d, c);
    return n;
  }

  // The node's free dimensions at their least-memory (top = false) or most-memory values.
  // At the top, a dimension monotone in memory only takes its fastest value, found once by
  // sweeping it alone.
  Candidate corner(Candidate c, std::size_t depth, bool top) const {
    for (std::size_t d = depth; d < c.size(); ++d) {
      const std::int32_t highest = size_of(d, c) - 1;
      c[d] = index_of(d, c, top ? std::min(highest, fastest_[d]) : 0);
    }
    return c;
  }
  // The free dimensions at their largest values: the other guess at the fastest corner, right
  // where the fastest values found for the whole combination are not fastest for this node.
  Candidate largest(Candidate c, std::size_t depth) const {
    for (std::size_t d = depth; d < c.size(); ++d)
      c[d] = index_of(d, c, size_of(d, c) - 1);
    return c;
  }

  // The fastest values of the dimensions monotone in memory, below the node that fixes those
  // monotone in neither: one knob at a time while that helps, from both of the node's corners,
  // since a larger threshold is not always faster. The top corners below the node take them.
  void find_fastest_values(const Candidate& node) {
    fastest_.assign(space_.dims.size(), INT32_MAX);
    Point found{corner(node, first_memory_, true), {}};
    bool have = false;
    for (bool from_top : {true}) {
      Candidate current = corner(node, first_memory_, from_top);
      for (int round = 0; round < 8; ++round) {
        const Candidate before = current;
        for (std::size_t d = first_memory_; d < space_.dims.size(); ++d) {
          std::vector<Candidate> sweep;
          for (std::int32_t i = 0; i < size_of(d, current); ++i) {
            sweep.push_back(current);
            sweep.back()[d] = index_of(d, current, i);
          }
          simulate(sweep);
          if (stopped()) return;
          for (const Candidate& x : sweep) {
            const Evaluation& e = memo_.at(x);
            const Evaluation& b = memo_.at(current);
            // Ties go to the smaller value: it keeps other thresholds' options open.
            if (e.rejected.empty() && (!b.rejected.empty() || e.step_ns < b.step_ns ||
                                       (e.step_ns == b.step_ns && x[d] < current[d])))
              current = x;
          }
        }
        if (current == before) break;
      }
      const Evaluation& e = memo_.at(current);
      if (e.rejected.empty() && (!have || e.step_ns < memo_.at(found.candidate).step_ns)) {
        found.candidate = current;
        have = true;
      }
    }
    for (std::size_t d = first_memory_; d < space_.dims.size(); ++d)
      fastest_[d] = found.candidate[d];
  }

  void simulate(std::vector<Candidate> batch) {
    if (stopped()) return;
    std::sort(batch.begin(), batch.end());
    batch.erase(std::unique(batch.begin(), batch.end()), batch.end());
    std::erase_if(batch, [&](const Candidate& c) { return memo_.count(c) > 0; });
    if (batch.empty()) return;
    std::vector<Evaluation> evals = pool_.run(batch);
    for (std::size_t i = 0; i < batch.size(); ++i) {
      memo_.emplace(batch[i], evals[i]);
      consider(batch[i], evals[i]);
    }
    result_.stats.simulated += static_cast<std::int64_t>(batch.size());
    report_progress();
  }

  bool stopped() {
    if (options_.stop && options_.stop->load()) result_.stats.interrupted = true;
    return result_.stats.interrupted;
  }

  enum class Prune { kNo, kOverBudget, kTooSlow, kDominated };

  // The bounds: a configuration below the node allocates at least the bottom corner's memory and
  // takes at least the top corner's step, each loosened by the slack the simulator departs from
  // monotonicity by. The memory bound is the allocated memory: reserved memory is never below it,
  // but is itself no bound, since the caching allocator's fragmentation moves it either way (a
  // tight live limit can reserve more than a loose one: Mixtral, by 17%).
  Prune prune(const Evaluation& top, const Evaluation& bottom) const {
    if (!top.rejected.empty() || !bottom.rejected.empty()) return Prune::kNo;
    const auto m = static_cast<std::int64_t>(static_cast<double>(bottom.allocated) *
                                             (1 - options_.memory_slack));
    const auto t =
        static_cast<TimeNs>(static_cast<double>(top.step_ns) * (1 - options_.time_slack));
    if (options_.memory_budget && m > *options_.memory_budget) return Prune::kOverBudget;
    if (options_.time_budget && t > *options_.time_budget) return Prune::kTooSlow;
    switch (options_.objective) {
      case Objective::kFastest:
        if (!ranked_.empty()) {
          const Evaluation& b = ranked_.front().eval;
          if (t > b.step_ns || (t == b.step_ns && m >= b.memory)) return Prune::kDominated;
        }
        break;
      case Objective::kLeastMemory:
        if (!ranked_.empty()) {
          const Evaluation& b = ranked_.front().eval;
          if (m > b.memory || (m == b.memory && t >= b.step_ns)) return Prune::kDominated;
        }
        break;
      case Objective::kPareto:
        for (const Point& p : front_)
          if (p.eval.step_ns <= t && p.eval.memory <= m) return Prune::kDominated;
        break;
    }
    return Prune::kNo;
  }

  void visit(std::size_t depth, Candidate c) {
    if (stopped()) return;
    if (depth == first_memory_) find_fastest_values(c);
    const std::size_t n = space_.dims.size();
    const std::int32_t size = size_of(depth, c);
    std::vector<Candidate> children;
    // Monotone: the most memory (the fastest) first, so that a good incumbent comes early.
    for (std::int32_t k = 0; k < size; ++k) {
      const std::int32_t i = space_.dims[depth].memory_monotone ? size - 1 - k : k;
      c[depth] = index_of(depth, c, i);
      children.push_back(c);
      if (size == 1) break;
    }
    if (depth + 1 == n) {
      // Leaves are simulated, not bounded.
      simulate(children);
      result_.stats.reached += static_cast<std::int64_t>(children.size());
      return;
    }
    // A node that fixes the dimensions monotone in neither is not bounded itself: its top corner
    // needs its own fastest values.
    if (depth + 1 <= first_memory_) {
      for (const Candidate& child : children)
        visit(depth + 1, child);
      return;
    }
    std::vector<Candidate> corners;
    for (const Candidate& child : children) {
      corners.push_back(corner(child, depth + 1, true));
      corners.push_back(largest(child, depth + 1));
      corners.push_back(corner(child, depth + 1, false));
    }
    simulate(std::move(corners));
    for (const Candidate& child : children) {
      if (stopped()) return;
      const Evaluation& fast = memo_.at(corner(child, depth + 1, true));
      const Evaluation& large = memo_.at(largest(child, depth + 1));
      const Evaluation& top =
          fast.rejected.empty() && (!large.rejected.empty() || fast.step_ns <= large.step_ns)
              ? fast
              : large;
      const Evaluation& bottom = memo_.at(corner(child, depth + 1, false));
      const Prune why = prune(top, bottom);
      if (why == Prune::kNo) {
        visit(depth + 1, child);
        continue;
      }
      const double pruned = subtree_size(depth + 1, child);
      switch (why) {
        case Prune::kOverBudget:
          result_.stats.pruned_over_budget += pruned;
          break;
        case Prune::kTooSlow:
          result_.stats.pruned_too_slow += pruned;
          break;
        case Prune::kDominated:
          result_.stats.pruned_dominated += pruned;
          break;
        case Prune::kNo:
          break;
      }
    }
  }

  // Where the simulator departs from the bounds' assumptions the pruned part may hide a better
  // neighbour: move the best one knob at a time while that improves it.
  void polish() {
    if (options_.objective == Objective::kPareto) return;
    const std::int64_t before = result_.stats.simulated;
    // From the best few, so that one local optimum does not hide a better one nearby.
    std::vector<Candidate> starts;
    for (std::size_t i = 0; i < std::min<std::size_t>(3, ranked_.size()); ++i)
      starts.push_back(ranked_[i].candidate);
    for (const Candidate& start : starts)
      polish_from(start);
    result_.stats.polished = result_.stats.simulated - before;
  }

  void polish_from(Candidate current) {
    for (int round = 0; round < 16 && !stopped(); ++round) {
      std::vector<Candidate> batch;
      for (std::size_t d = 0; d < current.size(); ++d) {
        for (std::int32_t i = 0; i < size_of(d, current); ++i) {
          Candidate x = current;
          x[d] = index_of(d, current, i);
          // Changing the checkpoint interval can switch the checkpointing knobs on or off.
          for (std::size_t e = 0; e < x.size(); ++e)
            if (inactive(e, x)) x[e] = index_of(e, x, 0);
          if (x != current) batch.push_back(x);
        }
      }
      simulate(batch);
      if (stopped()) return;
      // Step to the best neighbour that meets the budgets, if it beats where we are.
      Point best{current, memo_.at(current)};
      for (const Candidate& x : batch) {
        const Point p{x, memo_.at(x)};
        if (feasible(p.eval) && better(p, best)) best = p;
      }
      if (best.candidate == current) return;
      current = best.candidate;
    }
  }

  void enumerate_all() {
    std::vector<Candidate> batch;
    auto flush = [&] {
      simulate(std::move(batch));
      batch.clear();
    };
    auto rec = [&](auto&& self, std::size_t depth, Candidate& c) -> void {
      if (stopped()) return;
      if (depth == c.size()) {
        batch.push_back(c);
        ++result_.stats.reached;
        if (batch.size() >= 64) flush();
        return;
      }
      for (std::int32_t i = 0; i < size_of(depth, c); ++i) {
        c[depth] = index_of(depth, c, i);
        self(self, depth + 1, c);
      }
    };
    Candidate c(space_.dims.size(), 0);
    rec(rec, 0, c);
    flush();
  }

  bool feasible(const Evaluation& e) const {
    return e.rejected.empty() && e.host_fits &&
           (!options_.memory_budget || e.memory <= *options_.memory_budget) &&
           (!options_.time_budget || e.step_ns <= *options_.time_budget);
  }

  // The objective's order; ties go to the earlier candidate, so the answer is unique.
  bool better(const Point& a, const Point& b) const {
    const auto key = [&](const Point& p) {
      return options_.objective == Objective::kLeastMemory
                 ? std::make_pair(p.eval.memory, static_cast<std::int64_t>(p.eval.step_ns))
                 : std::make_pair(static_cast<std::int64_t>(p.eval.step_ns), p.eval.memory);
    };
    if (key(a) != key(b)) return key(a) < key(b);
    return a.candidate < b.candidate;
  }

  void consider(const Candidate& c, const Evaluation& e) {
    if (!e.rejected.empty() || !e.host_fits) return;
    Point p{c, e};
    if (!result_.least_memory || e.memory < result_.least_memory->eval.memory ||
        (e.memory == result_.least_memory->eval.memory &&
         e.step_ns < result_.least_memory->eval.step_ns))
      result_.least_memory = p;
    // The front of everything simulated (the plot), and of what meets the budgets (pruning and
    // the Pareto objective).
    insert_front(all_front_, p);
    if (!feasible(e)) return;
    insert_front(front_, p);
    const auto at = std::upper_bound(ranked_.begin(), ranked_.end(), p,
                                     [&](const Point& a, const Point& b) { return better(a, b); });
    ranked_.insert(at, p);
    if (ranked_.size() > options_.runners_up + 1) ranked_.pop_back();
  }

  static void insert_front(std::vector<Point>& front, const Point& p) {
    for (const Point& q : front)
      if (q.eval.memory <= p.eval.memory && q.eval.step_ns <= p.eval.step_ns) return;
    std::erase_if(front, [&](const Point& q) {
      return p.eval.memory <= q.eval.memory && p.eval.step_ns <= q.eval.step_ns;
    });
    front.insert(std::upper_bound(
                     front.begin(), front.end(), p,
                     [](const Point& a, const Point& b) { return a.eval.memory < b.eval.memory; }),
                 p);
  }

  void report_progress() {
    if (!options_.progress) return;
    const Clock::time_point now = Clock::now();
    if (now - last_progress_ < std::chrono::milliseconds(250)) return;
    last_progress_ = now;
    std::optional<Point> best;
    if (!ranked_.empty()) best = ranked_.front();
    const auto pruned =
        static_cast<std::int64_t>(result_.stats.pruned_over_budget + result_.stats.pruned_too_slow +
                                  result_.stats.pruned_dominated);
    options_.progress(result_.stats.simulated, pruned, best);
  }

  void finish() {
    if (options_.objective == Objective::kPareto) {
      result_.pareto = front_;
      // The Pareto objective's pick: the fastest point of the front.
      if (!front_.empty()) {
        result_.best =
            *std::min_element(front_.begin(), front_.end(), [](const Point& a, const Point& b) {
              return a.eval.step_ns != b.eval.step_ns ? a.eval.step_ns < b.eval.step_ns
                                                      : a.candidate < b.candidate;
            });
      }
    } else {
      result_.pareto = all_front_;
      if (!ranked_.empty()) result_.best = ranked_.front();
    }
    for (std::size_t i = 1; i < ranked_.size(); ++i)
      result_.runners_up.push_back(ranked_[i]);
    for (const Dimension& d : space_.dims)
      result_.stats.collapsed += d.considered - static_cast<std::int64_t>(d.size());
    result_.stats.shared_steps = pool_.shared_steps();
    result_.stats.seconds = std::chrono::duration<double>(Clock::now() - start_).count();
  }

  const SearchSpace& space_;
  const SearchOptions& options_;
  WorkerPool pool_;
  Clock::time_point start_, last_progress_;
  std::size_t first_memory_ = 0;       // the first dimension monotone in memory
  std::size_t first_both_ = 0;         // ... in memory and time
  std::vector<std::int32_t> fastest_;  // per dimension, the value the top corner takes
  int interval_dim_ = -1;
  int pipeline_dim_ = -1;
  int partition_dim_ = -1;
  std::vector<std::size_t> needs_checkpointing_;
  std::map<Candidate, Evaluation> memo_;
  std::vector<Point> ranked_;     // the best few that meet the budgets
  std::vector<Point> front_;      // Pareto front of those
  std::vector<Point> all_front_;  // Pareto front of everything simulated
  SearchResult result_;
};

}  // namespace

SearchResult search(const RunSpec& run, const SearchSpace& space, const SearchOptions& options) {
  ZP_CHECK(!space.dims.empty(), "an empty search space");
  Searcher searcher(run, space, options);
  return searcher.run();
}

}  // namespace zp::planner
