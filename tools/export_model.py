#!/usr/bin/env python3
"""Export a PyTorch nn.Module as a zeroplan model file (docs/model-format.md).

The module tree and the parameters are read from the module itself. The per-module costs and the
forward call order are measured by running one forward pass on a sample batch, in training mode
with grad enabled, the way a DeepSpeed training step runs it:

  - forward pre-hooks and forward hooks on every module give the call sequence and which call is
    running at any moment;
  - torch.autograd.graph.saved_tensors_hooks sees every tensor autograd saves for backward, which
    gives activation_bytes;
  - a TorchDispatchMode sees every aten operator below autograd, which gives forward_flops.

See tools/README.md for the model file contract and the exact counting rules.

Only the standard library and torch are used; torch 1.13 and newer are supported.
"""

import argparse
import importlib
import importlib.util
import inspect
import json
import math
import os
import sys
import tempfile
import traceback

PROG = "export_model"
FORMAT = "zeroplan.model"
VERSION = 1


class ExportError(Exception):
    """A problem with the user's input or model; reported as one line, exit status 2."""


def one_line(exc):
    """The first non-empty line of an exception's message, prefixed with its type."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# --------------------------------------------------------------------------------------------
# Loading the user's model
# --------------------------------------------------------------------------------------------


def load_model_file(path):
    if not os.path.isfile(path):
        raise ExportError(f"model file {path!r} does not exist")
    # Leave no __pycache__ behind in the user's (or the test's) source tree.
    sys.dont_write_bytecode = True
    # Load under a private name so a model file called e.g. "torch.py" cannot shadow anything,
    # and let it import its neighbours the way `python MODEL_FILE.py` would.
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    spec = importlib.util.spec_from_file_location("_zeroplan_user_model", path)
    if spec is None or spec.loader is None:
        raise ExportError(f"model file {path!r} cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - any failure of user code is reported the same way
        raise ExportError(f"model file {path!r} failed to load: {one_line(exc)}") from exc
    return module, f"model file {path!r}"


def load_factory_spec(spec):
    """'package.module:factory' -> (module, factory name)."""
    module_name, sep, factory = spec.partition(":")
    if not sep or not module_name or not factory:
        raise ExportError(f"--module {spec!r} must look like package.module:factory")
    sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001
        raise ExportError(f"--module {spec!r}: cannot import {module_name!r}: {one_line(exc)}") from exc
    return module, factory


def require_function(module, name, where):
    fn = getattr(module, name, None)
    if fn is None:
        raise ExportError(f"{where} does not define {name}()")
    if not callable(fn):
        raise ExportError(f"{where}: {name} is not callable")
    return fn


def call_user(fn, what, *args):
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001
        raise ExportError(f"{what} failed: {one_line(exc)}") from exc


# --------------------------------------------------------------------------------------------
# Tensor helpers
# --------------------------------------------------------------------------------------------

DTYPE_NAMES = {}  # torch.dtype -> format name; filled once torch is imported
ACTIVATION_DTYPES = {}  # --dtype value -> torch.dtype


def init_dtypes(torch):
    DTYPE_NAMES.update({
        torch.float32: "fp32",
        torch.float16: "fp16",
        torch.bfloat16: "bf16",
        torch.float64: "fp64",
        torch.int64: "int64",
        torch.int32: "int32",
        torch.int8: "int8",
        torch.uint8: "uint8",
        torch.bool: "bool",
    })
    ACTIVATION_DTYPES.update({"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16})


def walk_tensors(value, torch):
    """Yields the tensors inside nested tuples, lists, sets and dicts (model outputs such as
    Hugging Face's ModelOutput are dicts)."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from walk_tensors(v, torch)
    elif isinstance(value, (tuple, list, set, frozenset)):
        for v in value:
            yield from walk_tensors(v, torch)


def tensor_bytes(t):
    return t.numel() * t.element_size()


def storage_ptr(t):
    # untyped_storage() is torch >= 2.0; storage() warns there but is all that 1.13 has.
    storage = t.untyped_storage() if hasattr(t, "untyped_storage") else t.storage()
    return storage.data_ptr()


def memory_key(t):
    """Identifies the memory a tensor occupies, so that one tensor saved twice (or saved once as
    itself and once as a same-sized view) counts once."""
    try:
        return (t.data_ptr(), tensor_bytes(t))
    except (RuntimeError, NotImplementedError):
        # Sparse and other storage-less tensors have no data pointer; fall back to identity.
        return ("id", id(t))


# --------------------------------------------------------------------------------------------
# FLOP counting rules
# --------------------------------------------------------------------------------------------

# Operators that do arithmetic on every element of their largest floating-point operand or result:
# element-wise math (the result is the largest), reductions (the input is), and softmax and the
# normalisations (the same size). Each counts one FLOP per element of that largest tensor.
# Everything not listed here or in MATRIX_OPS counts zero: views and reshapes, copies and dtype
# conversions, indexing and gathers (embedding), concatenation, comparisons and logical ops,
# tensor factories and random number generation.
PER_ELEMENT_OPS = frozenset("""
    add sub rsub mul div neg reciprocal abs sign pow sqrt rsqrt square exp exp2 expm1 log log2 log10
    log1p sin cos tan asin acos atan atan2 sinh cosh tanh asinh acosh atanh erf erfc erfinv sigmoid
    logit relu relu6 gelu silu mish elu selu celu leaky_relu prelu _prelu_kernel rrelu_with_noise
    hardtanh hardswish hardsigmoid hardshrink softshrink softplus threshold clamp clamp_min
    clamp_max clip minimum maximum fmin fmax lerp addcmul addcdiv hypot floor_divide remainder fmod
    native_dropout
    sum mean prod amax amin max min var std var_mean std_mean norm linalg_vector_norm logsumexp
    cumsum cumprod
    _softmax _log_softmax native_layer_norm native_batch_norm _native_batch_norm_legit
    _native_batch_norm_legit_no_training native_group_norm _fused_rms_norm
""".split())

MATRIX_OPS = frozenset("""
    mm addmm _addmm_activation bmm baddbmm addbmm mv addmv dot vdot convolution
    _scaled_dot_product_flash_attention _scaled_dot_product_efficient_attention
    _scaled_dot_product_cudnn_attention _scaled_dot_product_flash_attention_for_cpu
""".split())


def op_name(func):
    """'aten::add_' -> 'add': in-place variants count like the functional op (an out= variant is
    an overload of the same name)."""
    name = func._schema.name.split("::", 1)[-1]
    if name.endswith("_") and not name.endswith("__"):
        name = name[:-1]
    return name


def matrix_flops(name, args, out_tensors):
    """2 FLOPs per multiply-add of a matrix product, plus one per output element for the
    added term of the add-forms (the bias of a Linear)."""
    def shape(i):
        return tuple(args[i].shape)

    if name == "mm":
        (m, k), (_, n) = shape(0), shape(1)
        return 2 * m * n * k
    if name in ("addmm", "_addmm_activation"):
        (m, k), (_, n) = shape(1), shape(2)
        return 2 * m * n * k + m * n
    if name == "bmm":
        (b, m, k), (_, _, n) = shape(0), shape(1)
        return 2 * b * m * n * k
    if name == "baddbmm":
        (b, m, k), (_, _, n) = shape(1), shape(2)
        return 2 * b * m * n * k + b * m * n
    if name == "addbmm":
        (b, m, k), (_, _, n) = shape(1), shape(2)
        return 2 * b * m * n * k + m * n
    if name == "mv":
        m, k = shape(0)
        return 2 * m * k
    if name == "addmv":
        m, k = shape(1)
        return 2 * m * k + m
    if name in ("dot", "vdot"):
        return 2 * args[0].numel()
    if name == "convolution":
        # convolution(input, weight, bias, stride, padding, dilation, transposed, output_padding,
        #             groups)
        inp, weight, bias, transposed = args[0], args[1], args[2], bool(args[6])
        kernel = math.prod(weight.shape[2:])
        out = out_tensors[0]
        if transposed:
            # weight is [C_in, C_out/groups, k...]: every input element feeds C_out/groups*k outputs.
            macs = inp.numel() * weight.shape[1] * kernel
        else:
            # weight is [C_out, C_in/groups, k...]: every output element sums C_in/groups*k products.
            macs = out.numel() * weight.shape[1] * kernel
        return 2 * macs + (out.numel() if bias is not None else 0)
    if name.startswith("_scaled_dot_product"):
        # query [..., L, E], key [..., S, E], value [..., S, Ev]: scores, one softmax FLOP per
        # score, then the weighted sum of values.
        q, k, v = args[0], args[1], args[2]
        batch = math.prod(q.shape[:-2])
        l_len, e_dim = q.shape[-2], q.shape[-1]
        s_len, ev_dim = k.shape[-2], v.shape[-1]
        scores = batch * l_len * s_len
        return 2 * scores * e_dim + scores + 2 * scores * ev_dim
    raise AssertionError(f"no FLOP rule for matrix op {name}")


# --------------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------------


class CallRecord:
    __slots__ = ("module", "parent", "inputs_require_grad", "flops", "activation_bytes",
                 "saved_keys", "output_bytes")

    def __init__(self, module, parent, inputs_require_grad):
        self.module = module
        self.parent = parent
        self.inputs_require_grad = inputs_require_grad
        self.flops = 0
        self.activation_bytes = 0
        self.saved_keys = set()
        self.output_bytes = 0


class Recorder:
    """The forward call stack, shared by the module hooks, the saved-tensor hooks and the
    dispatch mode: whatever happens is charged to the innermost module call running."""

    def __init__(self, torch, model_state_storages, parameter_ids=frozenset()):
        self.torch = torch
        self.calls = []
        self.stack = []
        self.model_state_storages = model_state_storages
        self.parameter_ids = parameter_ids
        # Module index -> ids of parameters registered on it as external (see end_call).
        self.external = {}
        # Saved tensors stay referenced until the export ends: a freed activation's address could
        # otherwise be reused by a later one and be mistaken for it.
        self.keep_alive = []

    def current(self):
        return self.calls[self.stack[-1]] if self.stack else None

    def inputs_require_grad(self, args, kwargs):
        torch = self.torch
        for t in walk_tensors((args, kwargs or {}), torch):
            if t.is_floating_point() and t.requires_grad:
                return True
        return False

    def begin_call(self, module_index, args, kwargs):
        parent = self.stack[-1] if self.stack else -1
        self.calls.append(CallRecord(module_index, parent, self.inputs_require_grad(args, kwargs)))
        self.stack.append(len(self.calls) - 1)

    def end_call(self, module_index, output):
        if not self.stack or self.calls[self.stack[-1]].module != module_index:
            # A forward that called a submodule's forward() directly, or re-entered in an
            # unusual way, would break the nesting; say so rather than write a wrong sequence.
            raise ExportError(f"forward hooks of module {module_index} did not nest properly")
        call = self.calls[self.stack.pop()]
        seen = set()
        for t in walk_tensors(output, self.torch):
            key = memory_key(t)
            if key not in seen:
                seen.add(key)
                call.output_bytes += tensor_bytes(t)
        self.register_external(module_index, output)

    def register_external(self, module_index, output):
        """A module that returns one of the model's parameters hands it to its caller: DeepSpeed's
        post-forward hook registers it on the innermost running module as an external parameter
        (unless a running module already has it), and drops it from the returning module."""
        for item in top_level_items(output, self.torch):
            key = id(item)
            if key not in self.parameter_ids:
                continue
            # The root stays on DeepSpeed's module stack for the whole forward.
            running = [self.calls[i].module for i in self.stack] + [0]
            if not any(key in self.external.get(m, []) for m in running):
                caller = self.calls[self.stack[-1]].module if self.stack else 0
                self.external.setdefault(caller, []).append(key)
            if key in self.external.get(module_index, []):
                self.external[module_index].remove(key)

    def pack(self, t):
        """saved_tensors_hooks pack hook: charges the tensor, and hands it to autograd as is."""
        self.on_saved(t)
        return t

    def on_saved(self, t):
        self.keep_alive.append(t)
        call = self.current()
        if call is None:
            return
        try:
            if storage_ptr(t) in self.model_state_storages:
                return
        except (RuntimeError, NotImplementedError):
            pass
        key = memory_key(t)
        if key not in call.saved_keys:
            call.saved_keys.add(key)
            call.activation_bytes += tensor_bytes(t)

    def on_op(self, func, args, kwargs, out):
        call = self.current()
        if call is None or not hasattr(func, "_schema"):
            return
        name = op_name(func)
        torch = self.torch
        out_tensors = list(walk_tensors(out, torch))
        if name in MATRIX_OPS:
            call.flops += matrix_flops(name, args, out_tensors)
        elif name in PER_ELEMENT_OPS:
            floats = [t.numel() for t in walk_tensors((args, kwargs, out_tensors), torch)
                      if t.is_floating_point()]
            call.flops += max(floats, default=0)


def top_level_items(output, torch):
    """The tensors DeepSpeed's post-forward hook looks at: the output itself, the items of a tuple
    or list, or the tensor values of a dict or object (not nested deeper)."""
    if output is None:
        return []
    if isinstance(output, (list, tuple)):
        return list(output)
    if isinstance(output, torch.Tensor):
        return [output]
    values = output if isinstance(output, dict) else getattr(output, "__dict__", {})
    return [v for k, v in values.items() if not str(k).startswith("__") and isinstance(v, torch.Tensor)]


def unpack_saved(t):
    return t


def make_flop_mode(torch, recorder):
    from torch.utils._python_dispatch import TorchDispatchMode

    class FlopMode(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            recorder.on_op(func, args, kwargs, out)
            return out

    return FlopMode()


def hook_kwargs_supported(torch):
    params = inspect.signature(torch.nn.Module.register_forward_pre_hook).parameters
    return "with_kwargs" in params


def install_hooks(torch, modules, recorder):
    """Pre- and post-forward hooks on every module of the tree; returns the handles."""
    handles = []
    with_kwargs = hook_kwargs_supported(torch)
    for index, (_, module) in enumerate(modules):
        if with_kwargs:
            def pre(mod, args, kwargs, index=index):
                recorder.begin_call(index, args, kwargs)

            def post(mod, args, kwargs, output, index=index):
                recorder.end_call(index, output)

            handles.append(module.register_forward_pre_hook(pre, with_kwargs=True))
            handles.append(module.register_forward_hook(post, with_kwargs=True))
        else:
            def pre(mod, args, index=index):
                recorder.begin_call(index, args, None)

            def post(mod, args, output, index=index):
                recorder.end_call(index, output)

            handles.append(module.register_forward_pre_hook(pre))
            handles.append(module.register_forward_hook(post))
    return handles


def cast_inputs(value, torch, dtype, device):
    """Moves the sample batch to the device and, when the model was cast (dtype is not None),
    its floating-point tensors to the activation dtype; integer ids stay integers."""
    if isinstance(value, torch.Tensor):
        value = value.to(device)
        return value.to(dtype) if dtype is not None and value.is_floating_point() else value
    if isinstance(value, tuple):
        return tuple(cast_inputs(v, torch, dtype, device) for v in value)
    if isinstance(value, list):
        return [cast_inputs(v, torch, dtype, device) for v in value]
    if isinstance(value, dict):
        return {k: cast_inputs(v, torch, dtype, device) for k, v in value.items()}
    return value


def measure(torch, model, inputs, modules, hint=""):
    """Runs one forward pass and returns the call records and the external parameters (module index
    -> parameter ids); `hint` is appended to a failure."""
    storages = set()
    for tensor in list(model.parameters()) + list(model.buffers()):
        try:
            storages.add(storage_ptr(tensor))
        except (RuntimeError, NotImplementedError):
            pass
    recorder = Recorder(torch, storages, frozenset(id(p) for p in model.parameters()))
    handles = install_hooks(torch, modules, recorder)
    if isinstance(inputs, dict):
        args, kwargs = (), inputs
    else:
        args, kwargs = (inputs if isinstance(inputs, tuple) else (inputs,)), {}
    model.train()
    try:
        with torch.enable_grad(), \
                torch.autograd.graph.saved_tensors_hooks(recorder.pack, unpack_saved), \
                make_flop_mode(torch, recorder):
            output = model(*args, **kwargs)
    except ExportError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise ExportError(f"forward failed: {one_line(exc)}{hint}") from exc
    finally:
        for h in handles:
            h.remove()
    del output
    return recorder.calls, recorder.external


# --------------------------------------------------------------------------------------------
# Structure
# --------------------------------------------------------------------------------------------


def dtype_name(dtype, what):
    name = DTYPE_NAMES.get(dtype)
    if name is None:
        raise ExportError(f"{what} has dtype {dtype}, which the model format cannot describe")
    return name


def describe(model, name, batch, seq, dtype_flag, calls, modules, external=None):
    index_of_module = {}
    for i, (qualname, module) in enumerate(modules):
        index_of_module.setdefault(id(module), i)

    # named_parameters() skips repeats, so each parameter object gets the first qualified name.
    parameters = []
    param_index = {}
    for qualname, p in model.named_parameters():
        param_index[id(p)] = len(parameters)
        parameters.append({
            "name": qualname,
            "shape": [int(d) for d in p.shape],
            "dtype": dtype_name(p.dtype, f"parameter {qualname}"),
            "requires_grad": bool(p.requires_grad),
        })

    first_call = {}
    for call in calls:
        first_call.setdefault(call.module, call)

    out_modules = []
    for i, (qualname, module) in enumerate(modules):
        # A module object registered in several places is listed once, under its first name
        # (named_modules() drops repeats); only that registration is a child edge.
        children = []
        for attr, child in module._modules.items():
            if child is None:
                continue
            child_qualname = f"{qualname}.{attr}" if qualname else attr
            j = index_of_module.get(id(child))
            if j is not None and modules[j][0] == child_qualname:
                children.append(j)
        slots = [{"attr": attr, "param": param_index[id(p)]}
                 for attr, p in module._parameters.items() if p is not None]
        call = first_call.get(i)
        entry = {
            "name": qualname.rsplit(".", 1)[-1] if qualname else "",
            "type": type(module).__name__,
            "children": children,
            "params": slots,
            "forward_flops": call.flops if call else 0,
            "activation_bytes": call.activation_bytes if call else 0,
            "output_bytes": call.output_bytes if call else 0,
        }
        ext = (external or {}).get(i)
        if ext:
            entry["external_params"] = [param_index[k] for k in ext]
        out_modules.append(entry)

    return {
        "format": FORMAT,
        "version": VERSION,
        "name": name,
        "batch": {"micro_batch": batch, "sequence_length": seq, "dtype": dtype_flag},
        "parameters": parameters,
        "modules": out_modules,
        "calls": [{"module": c.module, "parent": c.parent,
                   "inputs_require_grad": c.inputs_require_grad} for c in calls],
    }


def render(doc):
    """JSON with one line per parameter, module and call: diffable, and compact for big models."""
    items = []
    for key, value in doc.items():
        if isinstance(value, list) and value:
            rows = ",\n".join("  " + json.dumps(v) for v in value)
            items.append(f" {json.dumps(key)}: [\n{rows}\n ]")
        else:
            items.append(f" {json.dumps(key)}: {json.dumps(value)}")
    return "{\n" + ",\n".join(items) + "\n}\n"


def write_atomically(path, text):
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".export_model.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------

EPILOG = """\
model file contract:
  MODEL_FILE.py (or the module named by --module) defines
    build_model() -> torch.nn.Module
    make_batch(batch, seq) -> a tensor or a tuple of tensors, passed positionally to forward
                              (or a dict, passed as keyword arguments)
  With --module package.module:factory, factory() replaces build_model().
  Floating-point inputs are cast to --dtype; integer inputs (token ids) are left as they are.

costs (per module, of its first forward call, excluding its children):
  forward_flops     mm/bmm/addmm/baddbmm/mv/dot: 2 per multiply-add, plus 1 per output element
                    of the added term; convolution: 2*out_numel*(C_in/groups)*kernel_numel (+ bias);
                    element-wise, reduction, softmax and norm ops: 1 per element of their largest
                    floating-point tensor; views, copies, gathers and the rest: 0
  activation_bytes  tensors autograd saves for backward, each distinct memory once, parameters and
                    buffers excluded
  output_bytes      tensors in the returned value (tuples, lists, dicts walked)
See tools/README.md for details.
"""


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="export_model.py",
        description="Export a PyTorch nn.Module as a zeroplan model file (docs/model-format.md).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_file", nargs="?", metavar="MODEL_FILE.py",
                        help="Python file defining build_model() and make_batch(batch, seq)")
    parser.add_argument("--module", metavar="PKG.MOD:FACTORY",
                        help="import the model instead: FACTORY() builds it, and the module's "
                             "make_batch(batch, seq) makes its input")
    parser.add_argument("--out", required=True, metavar="PATH", help="model file to write")
    parser.add_argument("--batch", type=int, default=1, help="micro batch size (default 1)")
    parser.add_argument("--seq", type=int, default=128, help="sequence length (default 128)")
    parser.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="fp32",
                        help="parameter and activation dtype (default fp32)")
    parser.add_argument("--name", help="label for reports (default: the model file's stem)")
    parser.add_argument("--device", default="cpu",
                        help="device for the sample forward, e.g. cuda (default cpu)")
    parser.add_argument("--seed", type=int, default=0, help="torch.manual_seed before building")
    parser.add_argument("--traceback", action="store_true",
                        help="print the full Python traceback of a failure")
    args = parser.parse_args(argv)
    if (args.model_file is None) == (args.module is None):
        parser.error("give exactly one of MODEL_FILE.py and --module")
    if args.batch < 1:
        parser.error(f"--batch must be >= 1, got {args.batch}")
    if args.seq < 1:
        parser.error(f"--seq must be >= 1, got {args.seq}")
    return args


def export(args):
    if args.model_file is not None:
        if not os.path.isfile(args.model_file):
            raise ExportError(f"model file {args.model_file!r} does not exist")
    try:
        import torch
    except Exception as exc:  # noqa: BLE001 - a broken install fails with more than ImportError
        raise ExportError(f"{sys.executable} cannot import torch ({one_line(exc)}); "
                          "run scripts/setup.sh") from exc
    init_dtypes(torch)

    if args.model_file is not None:
        source, where = load_model_file(args.model_file)
        factory_name = "build_model"
        default_name = os.path.splitext(os.path.basename(args.model_file))[0]
    else:
        source, factory_name = load_factory_spec(args.module)
        where = f"module {source.__name__!r}"
        default_name = source.__name__.rsplit(".", 1)[-1]
    build = require_function(source, factory_name, where)
    make_batch = require_function(source, "make_batch", where)

    torch.manual_seed(args.seed)
    model = call_user(build, f"{factory_name}()")
    if not isinstance(model, torch.nn.Module):
        raise ExportError(f"{factory_name}() returned {type(model).__name__}, not a torch.nn.Module")
    dtype = ACTIVATION_DTYPES[args.dtype]
    try:
        device = torch.device(args.device)
        model = model.to(device=device, dtype=dtype) if dtype != torch.float32 else model.to(device)
    except Exception as exc:  # noqa: BLE001
        raise ExportError(f"cannot move the model to {args.device}/{args.dtype}: {one_line(exc)}") \
            from exc
    inputs = call_user(make_batch, f"make_batch({args.batch}, {args.seq})", args.batch, args.seq)
    # Like the model, floating-point inputs are cast only for bf16 and fp16.
    inputs = cast_inputs(inputs, torch, dtype if dtype != torch.float32 else None, device)

    modules = list(model.named_modules())
    # Older torch builds lack many fp16 kernels on the CPU.
    hint = " (fp16 on the CPU needs kernels this torch may lack; try --device cuda or --dtype bf16)" \
        if args.dtype == "fp16" and device.type == "cpu" else ""
    calls, external = measure(torch, model, inputs, modules, hint)
    if not calls:
        raise ExportError("the forward pass called no module (is forward() bypassing __call__?)")
    doc = describe(model, args.name if args.name is not None else default_name,
                   args.batch, args.seq, args.dtype, calls, modules, external)
    try:
        write_atomically(args.out, render(doc))
    except OSError as exc:
        raise ExportError(f"cannot write {args.out!r}: {exc.strerror or exc}") from exc


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        export(args)
    except ExportError as exc:
        if args.traceback:
            traceback.print_exc()
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
