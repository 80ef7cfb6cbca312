// tools/export_model.py, run with Debian's torch on tests/tools/tiny_model.py and read back through
// zp::load_model_file. Every expected number below is derived by hand from what torch's autograd
// saves and from the exporter's counting rules (tools/README.md), and was confirmed on torch 1.13.
//
// The tiny model, with batch 2 and sequence 4 (8 tokens), fp32:
//   TinyModel
//     embed  Embedding(11, 8)            ids [2, 4] int64 -> [2, 4, 8]
//     block  Block                       x + act(proj(norm(act(fc(x)))))
//       fc   Linear(8, 16)               [2, 4, 8] -> [2, 4, 16]
//       act  ReLU                        called twice: on [2, 4, 16], then on [2, 4, 8]
//       norm LayerNorm(16)
//       proj Linear(16, 8)
//     head   Linear(8, 11, bias=False)   weight tied to embed.weight
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "core/model/model_json.h"
#include "core/model/module_tree.h"
#include "core/util/error.h"

namespace zp {
namespace {

namespace fs = std::filesystem;

constexpr const char* kPython = "/usr/bin/python3";

fs::path source_dir() {
  return fs::path(ZEROPLAN_SOURCE_DIR);
}
fs::path exporter() {
  return source_dir() / "tools" / "export_model.py";
}
fs::path tiny_model() {
  return source_dir() / "tests" / "tools" / "tiny_model.py";
}

// Single-quoted for /bin/sh.
std::string quote(std::string_view s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// A fresh directory, removed with everything in it when the test ends.
class ScratchDir {
 public:
  ScratchDir() {
    std::string pattern = (fs::path(testing::TempDir()) / "export_model_test.XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) {
      ADD_FAILURE() << "mkdtemp failed for " << pattern;
    }
    path_ = pattern;
  }
  ~ScratchDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

struct CommandResult {
  int status = -1;  // exit status, or -1 when the command did not exit normally
  std::string err;  // what it wrote to stderr
};

CommandResult run_command(const std::string& command, const fs::path& stderr_file) {
  const int raw = std::system((command + " 2> " + quote(stderr_file.string())).c_str());
  CommandResult result;
  if (raw != -1 && WIFEXITED(raw)) result.status = WEXITSTATUS(raw);
  result.err = read_text(stderr_file);
  return result;
}

// Empty when /usr/bin/python3 imports torch; otherwise why not, with the fix. The tests fail rather
// than skip: a missing torch is a broken setup, not an unsupported platform.
const std::string& torch_problem() {
  static const std::string problem = [] {
    ScratchDir dir;
    const CommandResult r =
        run_command(std::string(kPython) + " -c 'import torch'", dir.path() / "err");
    if (r.status == 0) return std::string();
    // The last line of the traceback says why ("No module named 'torch'").
    std::string why = r.err;
    while (!why.empty() && why.back() == '\n')
      why.pop_back();
    why = why.substr(why.rfind('\n') + 1);
    return std::string(kPython) + " cannot import torch (" + why +
           "); run scripts/setup.sh to install Debian's python3-torch";
  }();
  return problem;
}

std::string export_command(const fs::path& model, const fs::path& out,
                           const std::string& extra = "") {
  return std::string(kPython) + " " + quote(exporter().string()) + " " + quote(model.string()) +
         " --out " + quote(out.string()) + " " + extra;
}

// The tiny model exported once per dtype and kept for all tests of this binary.
struct Exported {
  std::string error;  // empty on success
  ModuleTree tree;
  std::vector<std::string> leftovers;  // files other than the output left in its directory
};

const Exported& export_tiny(const std::string& dtype) {
  static std::map<std::string, Exported> cache;
  auto found = cache.find(dtype);
  if (found != cache.end()) return found->second;
  Exported& e = cache[dtype];
  if (!torch_problem().empty()) {
    e.error = torch_problem();
    return e;
  }
  ScratchDir dir;
  const fs::path out = dir.path() / "tiny.json";
  const CommandResult r = run_command(
      export_command(tiny_model(), out, "--batch 2 --seq 4 --dtype " + dtype), dir.path() / "err");
  if (r.status != 0) {
    e.error = "export_model.py exited with " + std::to_string(r.status) + ": " + r.err;
    return e;
  }
  for (const auto& entry : fs::directory_iterator(dir.path())) {
    const std::string name = entry.path().filename().string();
    if (name != "tiny.json" && name != "err") e.leftovers.push_back(name);
  }
  try {
    e.tree = load_model_file(out);
  } catch (const UserError& error) {
    e.error = std::string("the exported file does not load: ") + error.what();
  }
  return e;
}

ModuleId find_module(const ModuleTree& tree, std::string_view qualified_name) {
  for (ModuleId id : tree.preorder()) {
    if (tree.qualified_name(id) == qualified_name) return id;
  }
  ADD_FAILURE() << "no module named \"" << qualified_name << "\"";
  return 0;
}

// Costs of a module by qualified name.
ModuleCost cost(const ModuleTree& tree, std::string_view qualified_name) {
  return tree.module(find_module(tree, qualified_name)).cost;
}

// Writes a model file for the error tests.
fs::path write_model(const ScratchDir& dir, const std::string& name, const std::string& text) {
  const fs::path path = dir.path() / name;
  std::ofstream(path) << text;
  return path;
}

int count_lines(const std::string& text) {
  int lines = 0;
  for (char c : text)
    lines += c == '\n' ? 1 : 0;
  return lines;
}

#define ASSERT_EXPORTED(e) ASSERT_TRUE((e).error.empty()) << (e).error

TEST(ExportModelTest, ModulesAreInNamedModulesOrderWithClassNames) {
  const Exported& e = export_tiny("fp32");
  ASSERT_EXPORTED(e);
  const ModuleTree& tree = e.tree;
  const std::vector<std::string> names = {"",          "embed",      "block",      "block.fc",
                                          "block.act", "block.norm", "block.proj", "head"};
  const std::vector<std::string> types = {"TinyModel", "Embedding", "Block",  "Linear",
                                          "ReLU",      "LayerNorm", "Linear", "Linear"};
  ASSERT_EQ(tree.modules().size(), names.size());
  for (ModuleId id = 0; id < static_cast<ModuleId>(names.size()); ++id) {
    EXPECT_EQ(tree.qualified_name(id), names[static_cast<size_t>(id)]) << "module " << id;
    EXPECT_EQ(tree.module(id).type, types[static_cast<size_t>(id)]) << "module " << id;
  }
  EXPECT_EQ(tree.module(0).children, (std::vector<ModuleId>{1, 2, 7}));
  EXPECT_EQ(tree.module(2).children, (std::vector<ModuleId>{3, 4, 5, 6}));
  EXPECT_EQ(tree.module(4).parent, 2);
  EXPECT_EQ(tree.preorder(), (std::vector<ModuleId>{0, 1, 2, 3, 4, 5, 6, 7}));
}

TEST(ExportModelTest, TiedWeightIsOneParameterRegisteredOnTwoModules) {
  const Exported& e = export_tiny("fp32");
  ASSERT_EXPORTED(e);
  const ModuleTree& tree = e.tree;
  struct Expected {
    std::string name;
    std::vector<std::int64_t> shape;
  };
  // head.weight is embed.weight, so it is not listed again.
  const std::vector<Expected> expected = {
      {"embed.weight", {11, 8}},   {"block.fc.weight", {16, 8}}, {"block.fc.bias", {16}},
      {"block.norm.weight", {16}}, {"block.norm.bias", {16}},    {"block.proj.weight", {8, 16}},
      {"block.proj.bias", {8}},
  };
  ASSERT_EQ(tree.parameters().size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    const Parameter& p = tree.parameter(static_cast<ParamId>(i));
    EXPECT_EQ(p.name, expected[i].name);
    EXPECT_EQ(p.shape, expected[i].shape) << p.name;
    EXPECT_EQ(p.dtype, DType::kFloat32) << p.name;
    EXPECT_TRUE(p.requires_grad) << p.name;
  }
  const Module& embed = tree.module(find_module(tree, "embed"));
  const Module& head = tree.module(find_module(tree, "head"));
  EXPECT_EQ(embed.params, (std::vector<ParamSlot>{{"weight", 0}}));
  EXPECT_EQ(head.params, (std::vector<ParamSlot>{{"weight", 0}}));
  const Module& fc = tree.module(find_module(tree, "block.fc"));
  EXPECT_EQ(fc.params, (std::vector<ParamSlot>{{"weight", 1}, {"bias", 2}}));
  // 88 + 128 + 16 + 16 + 16 + 128 + 8: the tied weight once.
  EXPECT_EQ(tree.total_parameters(), 400);
}

TEST(ExportModelTest, CallsArePreOrderWithParentsAndInputGrad) {
  const Exported& e = export_tiny("fp32");
  ASSERT_EXPORTED(e);
  // Module ids: 0 root, 1 embed, 2 block, 3 fc, 4 act, 5 norm, 6 proj, 7 head. The root and the
  // embedding get integer ids only, so their inputs do not require grad; everything after the
  // embedding sees its output, which does. act runs twice inside block.
  const std::vector<ForwardCall> expected = {
      {0, -1, false}, {1, 0, false}, {2, 0, true}, {3, 2, true}, {4, 2, true},
      {5, 2, true},   {6, 2, true},  {4, 2, true}, {7, 0, true},
  };
  EXPECT_EQ(e.tree.calls(), expected);
}

TEST(ExportModelTest, ActivationBytesAreWhatAutogradSavesExcludingParameters) {
  const Exported& e = export_tiny("fp32");
  ASSERT_EXPORTED(e);
  const ModuleTree& tree = e.tree;
  // embedding saves its index tensor (and its weight, a parameter): 2*4 int64.
  EXPECT_EQ(cost(tree, "embed").activation_bytes, 2 * 4 * 8);
  // Linear saves its input (its transposed weight is a view of a parameter): 8 tokens * 8 * fp32.
  EXPECT_EQ(cost(tree, "block.fc").activation_bytes, 8 * 8 * 4);
  // ReLU saves its output; its first call is on [2, 4, 16] (the second, on [2, 4, 8], would be
  // 256).
  EXPECT_EQ(cost(tree, "block.act").activation_bytes, 8 * 16 * 4);
  // layer_norm saves its input, and mean and rstd per token; weight and bias are parameters.
  EXPECT_EQ(cost(tree, "block.norm").activation_bytes, 8 * 16 * 4 + 8 * 4 + 8 * 4);
  EXPECT_EQ(cost(tree, "block.proj").activation_bytes, 8 * 16 * 4);
  // The tied head (no bias) saves its input only.
  EXPECT_EQ(cost(tree, "head").activation_bytes, 8 * 8 * 4);
  // The residual add in Block saves nothing; the root does no work of its own.
  EXPECT_EQ(cost(tree, "block").activation_bytes, 0);
  EXPECT_EQ(cost(tree, "").activation_bytes, 0);
}

TEST(ExportModelTest, OutputBytesOfFirstCall) {
  const Exported& e = export_tiny("fp32");
  ASSERT_EXPORTED(e);
  const ModuleTree& tree = e.tree;
  EXPECT_EQ(cost(tree, "").output_bytes, 8 * 11 * 4);  // logits
  EXPECT_EQ(cost(tree, "embed").output_bytes, 8 * 8 * 4);
  EXPECT_EQ(cost(tree, "block").output_bytes, 8 * 8 * 4);
  EXPECT_EQ(cost(tree, "block.fc").output_bytes, 8 * 16 * 4);
  EXPECT_EQ(cost(tree, "block.act").output_bytes, 8 * 16 * 4);
  EXPECT_EQ(cost(tree, "block.norm").output_bytes, 8 * 16 * 4);
  EXPECT_EQ(cost(tree, "block.proj").output_bytes, 8 * 8 * 4);
  EXPECT_EQ(cost(tree, "head").output_bytes, 8 * 11 * 4);
}

TEST(ExportModelTest, ForwardFlopsFollowTheCountingRules) {
  const Exported& e = export_tiny("fp32");
  ASSERT_EXPORTED(e);
  const ModuleTree& tree = e.tree;
  constexpr std::int64_t kTokens = 8;
  // A gather: no arithmetic.
  EXPECT_EQ(cost(tree, "embed").forward_flops, 0);
  // addmm: 2 per multiply-add, plus 1 per output element for the bias.
  EXPECT_EQ(cost(tree, "block.fc").forward_flops, 2 * kTokens * 8 * 16 + kTokens * 16);
  EXPECT_EQ(cost(tree, "block.proj").forward_flops, 2 * kTokens * 16 * 8 + kTokens * 8);
  // mm without bias.
  EXPECT_EQ(cost(tree, "head").forward_flops, 2 * kTokens * 8 * 11);
  // Element-wise and normalisation: 1 per element; the first ReLU call is on 8 * 16 elements.
  EXPECT_EQ(cost(tree, "block.act").forward_flops, kTokens * 16);
  EXPECT_EQ(cost(tree, "block.norm").forward_flops, kTokens * 16);
  // Block's own work is the residual add; its children's FLOPs are theirs.
  EXPECT_EQ(cost(tree, "block").forward_flops, kTokens * 8);
  EXPECT_EQ(cost(tree, "").forward_flops, 0);
}

TEST(ExportModelTest, RecordsBatchShapeAndName) {
  const Exported& e = export_tiny("fp32");
  ASSERT_EXPORTED(e);
  EXPECT_EQ(e.tree.shape(), (BatchShape{2, 4, DType::kFloat32}));
  EXPECT_EQ(e.tree.name(), "tiny_model");
  EXPECT_TRUE(e.leftovers.empty()) << "left behind: " << e.leftovers.front();
}

TEST(ExportModelTest, Bf16CastsParametersAndHalvesFloatingPointBytes) {
  const Exported& e = export_tiny("bf16");
  ASSERT_EXPORTED(e);
  const ModuleTree& tree = e.tree;
  EXPECT_EQ(tree.shape(), (BatchShape{2, 4, DType::kBFloat16}));
  for (const Parameter& p : tree.parameters())
    EXPECT_EQ(p.dtype, DType::kBFloat16) << p.name;
  // Token ids stay int64.
  EXPECT_EQ(cost(tree, "embed").activation_bytes, 2 * 4 * 8);
  EXPECT_EQ(cost(tree, "block.fc").activation_bytes, 8 * 8 * 2);
  // torch 1.13's CPU layer_norm keeps mean and rstd in the input's dtype.
  EXPECT_EQ(cost(tree, "block.norm").activation_bytes, 8 * 16 * 2 + 8 * 2 + 8 * 2);
  EXPECT_EQ(cost(tree, "").output_bytes, 8 * 11 * 2);
  // FLOPs do not depend on the dtype.
  EXPECT_EQ(cost(tree, "block.fc").forward_flops, 2 * 8 * 8 * 16 + 8 * 16);
}

TEST(ExportModelTest, AReturnedParameterIsExternalToTheCaller) {
  ASSERT_TRUE(torch_problem().empty()) << torch_problem();
  ScratchDir dir;
  const fs::path out = dir.path() / "external.json";
  const CommandResult r =
      run_command(export_command(source_dir() / "tests" / "tools" / "external_param_model.py", out,
                                 "--batch 1 --seq 2"),
                  dir.path() / "err");
  ASSERT_EQ(r.status, 0) << r.err;
  const ModuleTree tree = load_model_file(out);
  // gain.weight (parameter 2, after proj.weight and proj.bias) comes back from gain() to the root.
  EXPECT_EQ(tree.parameter(2).name, "gain.weight");
  EXPECT_EQ(tree.module(0).external_params, (std::vector<ParamId>{2}));
  EXPECT_TRUE(tree.module(find_module(tree, "gain")).external_params.empty());
  EXPECT_TRUE(tree.module(find_module(tree, "proj")).external_params.empty());
}

TEST(ExportModelCliTest, MissingModelFileIsOneLineErrorWithStatus2) {
  ScratchDir dir;
  const fs::path missing = dir.path() / "no_such_model.py";
  const fs::path out = dir.path() / "out.json";
  const CommandResult r = run_command(export_command(missing, out), dir.path() / "err");
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("no_such_model.py"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("does not exist"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(out));
}

TEST(ExportModelCliTest, MissingBuildModelIsOneLineErrorWithStatus2) {
  ASSERT_TRUE(torch_problem().empty()) << torch_problem();
  ScratchDir dir;
  const fs::path model =
      write_model(dir, "no_factory.py", "def make_batch(batch, seq):\n    return None\n");
  const fs::path out = dir.path() / "out.json";
  const CommandResult r = run_command(export_command(model, out), dir.path() / "err");
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("does not define build_model()"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(out));
}

TEST(ExportModelCliTest, ForwardFailureIsOneLineErrorWithStatus2) {
  ASSERT_TRUE(torch_problem().empty()) << torch_problem();
  ScratchDir dir;
  // Inputs of width 5 into a Linear that takes 3.
  const fs::path model = write_model(dir, "bad_forward.py",
                                     "import torch\n"
                                     "def build_model():\n"
                                     "    return torch.nn.Linear(3, 4)\n"
                                     "def make_batch(batch, seq):\n"
                                     "    return torch.randn(batch, seq, 5)\n");
  const fs::path out = dir.path() / "out.json";
  const CommandResult r = run_command(export_command(model, out), dir.path() / "err");
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("forward failed"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(out));
}

}  // namespace
}  // namespace zp
