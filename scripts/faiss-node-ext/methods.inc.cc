  // ---- defect-lens additions (scripts/faiss-node-ext): typed-array I/O, parameters, subset search ----
  // Every method converts FAISS and C++ exceptions into JS errors: a bad argument must never abort the
  // process that holds the index.

  static faiss::Index *dlUnwrap(faiss::Index *ix)
  {
    for (;;)
    {
      if (auto pt = dynamic_cast<faiss::IndexPreTransform *>(ix)) { ix = pt->index; continue; }
      if (auto rf = dynamic_cast<faiss::IndexRefine *>(ix)) { ix = rf->base_index; continue; }
      if (auto im = dynamic_cast<faiss::IndexIDMap *>(ix)) { ix = im->index; continue; }
      return ix;
    }
  }

  bool dlFloat32(const Napi::CallbackInfo &info, size_t at, float *&data, size_t &length)
  {
    Napi::Env env = info.Env();
    if (info.Length() <= at || !info[at].IsTypedArray() ||
        info[at].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    {
      Napi::TypeError::New(env, "argument " + std::to_string(at + 1) + " must be a Float32Array").ThrowAsJavaScriptException();
      return false;
    }
    auto arr = info[at].As<Napi::Float32Array>();
    data = arr.Data();
    length = arr.ElementLength();
    if (index_->d <= 0 || length % index_->d != 0)
    {
      Napi::Error::New(env, "Float32Array length " + std::to_string(length) + " is not a multiple of the dimension " + std::to_string(index_->d)).ThrowAsJavaScriptException();
      return false;
    }
    return true;
  }

  bool dlInt32(const Napi::CallbackInfo &info, size_t at, std::vector<idx_t> &out)
  {
    Napi::Env env = info.Env();
    if (info.Length() <= at || !info[at].IsTypedArray() ||
        info[at].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
    {
      Napi::TypeError::New(env, "argument " + std::to_string(at + 1) + " must be an Int32Array").ThrowAsJavaScriptException();
      return false;
    }
    auto arr = info[at].As<Napi::Int32Array>();
    out.resize(arr.ElementLength());
    for (size_t i = 0; i < out.size(); i++)
    {
      int32_t v = arr[i];
      if (v < 0 || v >= index_->ntotal)
      {
        Napi::RangeError::New(env, "id " + std::to_string(v) + " is outside the index (ntotal " + std::to_string(index_->ntotal) + ")").ThrowAsJavaScriptException();
        return false;
      }
      out[i] = v;
    }
    return true;
  }

  bool dlK(const Napi::CallbackInfo &info, size_t at, idx_t &k)
  {
    if (info.Length() <= at || !info[at].IsNumber() || info[at].As<Napi::Number>().Int64Value() < 1)
    {
      Napi::TypeError::New(info.Env(), "k must be a positive number").ThrowAsJavaScriptException();
      return false;
    }
    k = info[at].As<Napi::Number>().Int64Value();
    return true;
  }

  Napi::Object dlHits(Napi::Env env, const std::vector<float> &distances, const std::vector<idx_t> &labels)
  {
    auto d = Napi::Float32Array::New(env, distances.size());
    auto l = Napi::Int32Array::New(env, labels.size());
    for (size_t i = 0; i < distances.size(); i++)
    {
      d[i] = distances[i];
      l[i] = static_cast<int32_t>(labels[i]);
    }
    Napi::Object out = Napi::Object::New(env);
    out.Set("distances", d);
    out.Set("labels", l);
    return out;
  }

  Napi::Value addF32(const Napi::CallbackInfo &info)
  {
    Napi::Env env = info.Env();
    float *x; size_t n;
    if (!dlFloat32(info, 0, x, n)) return env.Undefined();
    try { index_->add(n / index_->d, x); }
    catch (const std::exception &e) { Napi::Error::New(env, e.what()).ThrowAsJavaScriptException(); }
    return env.Undefined();
  }

  Napi::Value trainF32(const Napi::CallbackInfo &info)
  {
    Napi::Env env = info.Env();
    float *x; size_t n;
    if (!dlFloat32(info, 0, x, n)) return env.Undefined();
    try { index_->train(n / index_->d, x); }
    catch (const std::exception &e) { Napi::Error::New(env, e.what()).ThrowAsJavaScriptException(); }
    return env.Undefined();
  }

  Napi::Value searchF32(const Napi::CallbackInfo &info)
  {
    Napi::Env env = info.Env();
    float *x; size_t n; idx_t k;
    if (!dlFloat32(info, 0, x, n) || !dlK(info, 1, k)) return env.Undefined();
    size_t nq = n / index_->d;
    std::vector<float> distances(nq * k);
    std::vector<idx_t> labels(nq * k);
    try { index_->search(nq, x, k, distances.data(), labels.data()); }
    catch (const std::exception &e) { Napi::Error::New(env, e.what()).ThrowAsJavaScriptException(); return env.Undefined(); }
    return dlHits(env, distances, labels);
  }

  Napi::Value getParameter(const Napi::CallbackInfo &info)
  {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsString())
    {
      Napi::TypeError::New(env, "parameter name must be a string").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    std::string name = info[0].As<Napi::String>().Utf8Value();
    faiss::Index *inner = dlUnwrap(index_.get());
    double v = -1;
    if (auto h = dynamic_cast<faiss::IndexHNSW *>(inner))
    {
      if (name == "efSearch") v = h->hnsw.efSearch;
      else if (name == "efConstruction") v = h->hnsw.efConstruction;
    }
    if (auto ivf = dynamic_cast<faiss::IndexIVF *>(inner))
    {
      if (name == "nprobe") v = ivf->nprobe;
    }
    return Napi::Number::New(env, v);
  }

  Napi::Value setParameter(const Napi::CallbackInfo &info)
  {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsString() || !info[1].IsNumber())
    {
      Napi::TypeError::New(env, "expected (name: string, value: number)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    std::string name = info[0].As<Napi::String>().Utf8Value();
    double value = info[1].As<Napi::Number>().DoubleValue();
    if (!(value >= 1) || value != static_cast<double>(static_cast<int>(value)))
    {
      Napi::RangeError::New(env, name + " must be a positive integer").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    faiss::Index *inner = dlUnwrap(index_.get());
    auto h = dynamic_cast<faiss::IndexHNSW *>(inner);
    auto ivf = dynamic_cast<faiss::IndexIVF *>(inner);
    if (name == "efSearch" && h) h->hnsw.efSearch = static_cast<int>(value);
    else if (name == "efConstruction" && h) h->hnsw.efConstruction = static_cast<int>(value);
    else if (name == "nprobe" && ivf) ivf->nprobe = static_cast<size_t>(value);
    else
    {
      Napi::Error::New(env, "parameter " + name + " does not apply to this index type").ThrowAsJavaScriptException();
    }
    return env.Undefined();
  }

  bool dlReconstruct(Napi::Env env, const idx_t *ids, size_t n, float *out)
  {
    try
    {
      for (size_t i = 0; i < n; i++) index_->reconstruct(ids[i], out + i * index_->d);
      return true;
    }
    catch (const std::exception &first)
    {
      // IVF indexes reconstruct only with a direct map (id -> list position); build it once and retry.
      faiss::IndexIVF *ivf = faiss::ivflib::try_extract_index_ivf(index_.get());
      if (ivf && ivf->direct_map.type == faiss::DirectMap::NoMap)
      {
        try
        {
          ivf->make_direct_map(true);
          for (size_t i = 0; i < n; i++) index_->reconstruct(ids[i], out + i * index_->d);
          return true;
        }
        catch (const std::exception &e) { Napi::Error::New(env, e.what()).ThrowAsJavaScriptException(); return false; }
      }
      Napi::Error::New(env, first.what()).ThrowAsJavaScriptException();
      return false;
    }
  }

  Napi::Value reconstructBatch(const Napi::CallbackInfo &info)
  {
    Napi::Env env = info.Env();
    std::vector<idx_t> ids;
    if (!dlInt32(info, 0, ids)) return env.Undefined();
    auto out = Napi::Float32Array::New(env, ids.size() * index_->d);
    if (!dlReconstruct(env, ids.data(), ids.size(), out.Data())) return env.Undefined();
    return out;
  }

  Napi::Value searchSubsetF32(const Napi::CallbackInfo &info)
  {
    Napi::Env env = info.Env();
    float *x; size_t n; idx_t k; std::vector<idx_t> ids;
    if (!dlFloat32(info, 0, x, n) || !dlK(info, 1, k) || !dlInt32(info, 2, ids)) return env.Undefined();
    const size_t d = index_->d, nq = n / d;
    const bool ip = index_->metric_type == faiss::METRIC_INNER_PRODUCT;
    const size_t block = 16384;
    // Best-first result lists per query, merged block by block.
    std::vector<float> bestD(nq * k, ip ? -std::numeric_limits<float>::infinity() : std::numeric_limits<float>::infinity());
    std::vector<idx_t> bestI(nq * k, -1);
    std::vector<float> vecs;
    std::vector<float> bd;
    std::vector<idx_t> bi;
    for (size_t start = 0; start < ids.size(); start += block)
    {
      size_t m = std::min(block, ids.size() - start);
      vecs.resize(m * d);
      if (!dlReconstruct(env, ids.data() + start, m, vecs.data())) return env.Undefined();
      size_t kk = std::min<size_t>(k, m);
      bd.assign(nq * kk, 0);
      bi.assign(nq * kk, -1);
      try
      {
        if (ip)
        {
          faiss::float_minheap_array_t res = {nq, kk, bi.data(), bd.data()};
          faiss::knn_inner_product(x, vecs.data(), d, nq, m, &res);
        }
        else
        {
          faiss::float_maxheap_array_t res = {nq, kk, bi.data(), bd.data()};
          faiss::knn_L2sqr(x, vecs.data(), d, nq, m, &res);
        }
      }
      catch (const std::exception &e) { Napi::Error::New(env, e.what()).ThrowAsJavaScriptException(); return env.Undefined(); }
      for (size_t q = 0; q < nq; q++)
      {
        std::vector<std::pair<float, idx_t>> merged;
        for (idx_t j = 0; j < k; j++)
          if (bestI[q * k + j] >= 0) merged.push_back({bestD[q * k + j], bestI[q * k + j]});
        for (size_t j = 0; j < kk; j++)
          if (bi[q * kk + j] >= 0) merged.push_back({bd[q * kk + j], ids[start + bi[q * kk + j]]});
        std::sort(merged.begin(), merged.end(), [ip](const auto &a, const auto &b) { return ip ? a.first > b.first : a.first < b.first; });
        for (idx_t j = 0; j < k; j++)
        {
          if (static_cast<size_t>(j) < merged.size()) { bestD[q * k + j] = merged[j].first; bestI[q * k + j] = merged[j].second; }
          else { bestI[q * k + j] = -1; }
        }
      }
    }
    return dlHits(env, bestD, bestI);
  }

  static Napi::Value setOmpThreads(const Napi::CallbackInfo &info)
  {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsNumber() || info[0].As<Napi::Number>().Int32Value() < 1)
    {
      Napi::TypeError::New(env, "threads must be a positive number").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    // Sets the calling thread's OpenMP team size: each FAISS worker thread chooses its own.
    omp_set_num_threads(info[0].As<Napi::Number>().Int32Value());
    return env.Undefined();
  }
  // ---- end of defect-lens additions ----

