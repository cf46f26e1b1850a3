"""Splices defect-lens's additions (methods.inc.cc) into faiss-node 0.5.1's src/faiss.cc."""
import pathlib
import sys

src = pathlib.Path(sys.argv[1])
methods = (pathlib.Path(__file__).parent / "methods.inc.cc").read_text()
s = src.read_text()

def replace_once(old, new):
    global s
    if s.count(old) != 1:
        sys.exit(f"faiss-node-ext: expected exactly one occurrence of {old!r} in {src}")
    s = s.replace(old, new)

replace_once("#include <faiss/impl/IDSelector.h>\n", """#include <faiss/impl/IDSelector.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexPreTransform.h>
#include <faiss/IndexRefine.h>
#include <faiss/IndexIDMap.h>
#include <faiss/IVFlib.h>
#include <faiss/utils/distances.h>
#include <faiss/utils/Heap.h>
#include <algorithm>
#include <limits>
#include <vector>
#include <omp.h>
""")
# FAISS 1.7.3 declares idx_t inside faiss::Index.
replace_once("using idx_t = faiss::idx_t;", "using idx_t = faiss::Index::idx_t;")
replace_once("protected:\n  std::unique_ptr<faiss::Index> index_;", methods + "protected:\n  std::unique_ptr<faiss::Index> index_;")
# One constructor reference per JS environment (thread): several worker threads may load the addon.
replace_once("inline static Napi::FunctionReference *constructor;", "inline static thread_local Napi::FunctionReference *constructor;")
replace_once('      InstanceMethod("toBuffer", &Index::toBuffer),\n', '''      InstanceMethod("toBuffer", &Index::toBuffer),
      InstanceMethod("addF32", &Index::addF32),
      InstanceMethod("trainF32", &Index::trainF32),
      InstanceMethod("searchF32", &Index::searchF32),
      InstanceMethod("getParameter", &Index::getParameter),
      InstanceMethod("setParameter", &Index::setParameter),
      InstanceMethod("reconstructBatch", &Index::reconstructBatch),
      InstanceMethod("searchSubsetF32", &Index::searchSubsetF32),
      StaticMethod("setOmpThreads", &Index::setOmpThreads),
''')
src.write_text(s)
