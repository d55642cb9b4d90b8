// Host emulation of the CUDA kernels: every kernel body in csrc/cuda/upsample_crop_add.cu is a
// __host__ __device__ function of one work item; the __global__ wrappers only add the grid-stride
// loop, the warp shuffle and the atomics. This program runs those item functions on the CPU,
// emulating the warp reductions, and compares every output element with naive references, for
// fp32/fp16/bf16 and contiguous, channels_last and padded layouts. tests/test_cuda_host_emulation.py
// compiles it with nvcc and runs it, so CI (which has no GPU) still checks the CUDA index math.
#include "../../csrc/cuda/upsample_crop_add.cu"  // the real kernels, compiled for the host side too
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

using namespace fcnfast;
using namespace fcnfast::cuda::detail;

static std::mt19937_64 rng(12345);
static int64_t ri(int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); }
static float rf() { return std::uniform_real_distribution<float>(-1.f, 1.f)(rng); }

template <typename T> T q(float v) { return from_float<T>(v); }

struct Case { Geometry g; bool dw; bool bias; bool skip; int xlayout; };  // xlayout 0 contig, 1 channels_last, 2 padded

static int failures = 0;
#ifndef FCNFAST_RANDOM_CASES
#define FCNFAST_RANDOM_CASES 350
#endif
static const int kRandomK2s = FCNFAST_RANDOM_CASES * 3 / 7, kRandomGeneral = FCNFAST_RANDOM_CASES * 4 / 7;
static bool force_slow = false;
static long k2s_cases = 0;
static long checks = 0;

template <typename T>
void run_case(const Case& cs, double tol) {
  const Geometry& g = cs.g;
  // x with layout
  int64_t xs[4];
  int64_t xsize;
  if (cs.xlayout == 0) { xs[3]=1; xs[2]=g.Win; xs[1]=g.Hin*g.Win; xs[0]=g.Cin*g.Hin*g.Win; xsize=g.N*xs[0]; }
  else if (cs.xlayout == 1) { xs[1]=1; xs[3]=g.Cin; xs[2]=g.Win*g.Cin; xs[0]=g.Hin*g.Win*g.Cin; xsize=g.N*xs[0]; }
  else { // padded: W+3, H+2, channel stride padded, batch stride padded
    xs[3]=2; xs[2]=2*g.Win+3; xs[1]=xs[2]*(g.Hin+1); xs[0]=xs[1]*g.Cin+5; xsize=g.N*xs[0]+7; }
  std::vector<T> x(xsize, q<T>(NAN));
  std::vector<float> xf(g.N*g.Cin*g.Hin*g.Win);
  for (int64_t n=0;n<g.N;++n) for(int64_t c=0;c<g.Cin;++c) for(int64_t i=0;i<g.Hin;++i) for(int64_t j=0;j<g.Win;++j){
    T v=q<T>(rf()); x[n*xs[0]+c*xs[1]+i*xs[2]+j*xs[3]]=v; xf[((n*g.Cin+c)*g.Hin+i)*g.Win+j]=to_float(v);}
  const int64_t K=g.kh*g.kw;
  std::vector<T> w(g.Cin*g.Cout*K); std::vector<float> wf(w.size());
  for (int64_t ci=0;ci<g.Cin;++ci) for(int64_t co=0;co<g.Cout;++co) for(int64_t e=0;e<K;++e){
    float v = (cs.dw && ci!=co) ? 0.f : rf(); T t=q<T>(v); w[(ci*g.Cout+co)*K+e]=t; wf[(ci*g.Cout+co)*K+e]=to_float(t);}
  std::vector<T> bias(g.Cout); for (auto& b: bias) b=q<T>(rf());
  // skip: (N, Cout, sy+H+1, sx+W+2) contiguous but larger
  const int64_t Hs=g.sy+g.H+1, Ws=g.sx+g.W+2;
  int64_t ss[4]={g.Cout*Hs*Ws, Hs*Ws, Ws, 1};
  if (cs.xlayout == 1) { ss[1]=1; ss[3]=g.Cout; ss[2]=Ws*g.Cout; ss[0]=Hs*Ws*g.Cout; }
  std::vector<T> skip(g.N*g.Cout*Hs*Ws); for (auto& s: skip) s=q<T>(rf());

  // ---- forward reference: full scatter, crop
  const int64_t Hf=(g.Hin-1)*g.sh+g.kh, Wf=(g.Win-1)*g.sw+g.kw;
  std::vector<double> full(g.N*g.Cout*Hf*Wf, 0.0);
  for (int64_t n=0;n<g.N;++n) for(int64_t ci=0;ci<g.Cin;++ci) for(int64_t i=0;i<g.Hin;++i) for(int64_t j=0;j<g.Win;++j){
    double xv=xf[((n*g.Cin+ci)*g.Hin+i)*g.Win+j];
    for(int64_t co=0;co<g.Cout;++co) for(int64_t ky=0;ky<g.kh;++ky) for(int64_t kx=0;kx<g.kw;++kx){
      double wv=wf[(ci*g.Cout+co)*K+ky*g.kw+kx]; if (wv==0.0) continue;
      full[((n*g.Cout+co)*Hf+i*g.sh+ky)*Wf+j*g.sw+kx]+=xv*wv; }}
  std::vector<T> out(g.N*g.Cout*g.H*g.W, q<T>(NAN));
  {
    auto run = [&](auto a) {
      a.x=x.data(); for(int d=0;d<4;++d){a.xs[d]=xs[d]; a.ss[d]=ss[d];}
      if (force_slow) a.fast=false; a.weight=w.data(); a.bias=cs.bias?bias.data():nullptr; a.skip=cs.skip?skip.data():nullptr; a.out=out.data();
      return a; };
    const bool k2s = g.kh == 2*g.sh && g.kw == 2*g.sw;
    constexpr int RD=kFwdRowsDepthwise, RN=kFwdRowsDense, CB=kFwdChannelsDense;
    if (cs.dw) { auto a=run(make_fwd_args<T,RD,1>(g,true)); for(int64_t idx=0;idx<a.total;++idx) { if (k2s) fwd_item<T,true,true,RD,1>(a,idx); else fwd_item<T,true,false,RD,1>(a,idx);} }
    else { auto a=run(make_fwd_args<T,RN,CB>(g,false)); for(int64_t idx=0;idx<a.total;++idx) { if (k2s) fwd_item<T,false,true,RN,CB>(a,idx); else fwd_item<T,false,false,RN,CB>(a,idx);} }
    if (k2s) ++k2s_cases;
  }
  double maxerr=0; int64_t bad=-1; int64_t nbad=0;
  for (int64_t n=0;n<g.N;++n) for(int64_t co=0;co<g.Cout;++co) for(int64_t h=0;h<g.H;++h) for(int64_t ww=0;ww<g.W;++ww){
    double ref=full[((n*g.Cout+co)*Hf+g.oy+h)*Wf+g.ox+ww];
    if (cs.bias) ref+=to_float(bias[co]);
    if (cs.skip) ref+=to_float(skip[n*ss[0]+co*ss[1]+(g.sy+h)*ss[2]+(g.sx+ww)*ss[3]]);
    double got=to_float(out[((n*g.Cout+co)*g.H+h)*g.W+ww]);
    double err=std::fabs(got-ref)/(1.0+std::fabs(ref));
    if (!(err<=tol) && nbad++ < 5) printf("  bad n%ld co%ld h%ld w%ld got %g ref %g\n", n,co,h,ww,got,ref);
    if (!(err<=maxerr)) { maxerr=err; bad=((n*g.Cout+co)*g.H+h)*g.W+ww; if (std::isnan(err)) break;} ++checks; }
  auto report=[&](const char* what, double e, int64_t where){
    if (!(e<=tol)) { ++failures; printf("FAIL %s dtype=%zu dw=%d lay=%d g={N%ld Cin%ld Cout%ld Hin%ld Win%ld k%ldx%ld H%ld W%ld s%ldx%ld o%ld,%ld so%ld,%ld} err=%g at %ld\n",
      what, sizeof(T), cs.dw, cs.xlayout, g.N,g.Cin,g.Cout,g.Hin,g.Win,g.kh,g.kw,g.H,g.W,g.sh,g.sw,g.oy,g.ox,g.sy,g.sx,e,where);} };
  if (nbad) printf("  nbad %ld\n", nbad);
  report("fwd", maxerr, bad);

  // ---- bwd_input
  std::vector<T> go(g.N*g.Cout*g.H*g.W); std::vector<float> gof(go.size());
  for (size_t p=0;p<go.size();++p){go[p]=q<T>(rf()); gof[p]=to_float(go[p]);}
  {
    std::vector<T> gx(g.N*g.Cin*g.Hin*g.Win, q<T>(NAN));
    auto emulate = [&](auto a, auto dwc, auto cibc) {
      constexpr bool DW = decltype(dwc)::value; constexpr int CIB = decltype(cibc)::value;
      if (force_slow) a.fast=false; a.grad_out=go.data(); a.weight=w.data(); a.grad_x=gx.data();
      const int64_t G=int64_t{1}<<a.lg;
      for (int64_t e0=0;e0<a.total;e0+=G){ float sum[CIB]={};
        for(int64_t l=0;l<G;++l){ float acc[CIB]={}; bwd_input_partial<T,DW,CIB>(a,e0+l,acc); for(int c=0;c<CIB;++c) sum[c]+=acc[c]; }
        bwd_input_store<T,CIB>(a,e0,sum);} };
    if (cs.dw) emulate(make_bwd_input_args<T,1>(g,true), std::true_type{}, std::integral_constant<int,1>{});
    else emulate(make_bwd_input_args<T,kBwdInChannelsDense>(g,false), std::false_type{}, std::integral_constant<int,kBwdInChannelsDense>{});
    double me=0; int64_t wb=-1;
    for (int64_t n=0;n<g.N;++n) for(int64_t ci=0;ci<g.Cin;++ci) for(int64_t i=0;i<g.Hin;++i) for(int64_t j=0;j<g.Win;++j){
      double ref=0;
      for(int64_t co=0;co<g.Cout;++co) for(int64_t ky=0;ky<g.kh;++ky) for(int64_t kx=0;kx<g.kw;++kx){
        int64_t y=i*g.sh+ky-g.oy, xx=j*g.sw+kx-g.ox; if(y<0||y>=g.H||xx<0||xx>=g.W) continue;
        ref+=gof[((n*g.Cout+co)*g.H+y)*g.W+xx]*wf[(ci*g.Cout+co)*K+ky*g.kw+kx]; }
      int64_t p=((n*g.Cin+ci)*g.Hin+i)*g.Win+j;
      double err=std::fabs(to_float(gx[p])-ref)/(1.0+std::fabs(ref)); if(!(err<=me)){me=err;wb=p; if(std::isnan(err)) break;} ++checks; }
    report("bwd_input", me, wb);
  }
  // ---- bwd_weight (dense always)
  {
    std::vector<float> gw(g.Cin*g.Cout*K, 0.f);
    auto a=make_bwd_weight_args<T>(g); a.x=x.data(); for(int d=0;d<4;++d) a.xs[d]=xs[d]; a.grad_out=go.data(); a.grad_w=gw.data();
    for (int64_t tile=0;tile<a.tiles;++tile) for(int64_t tid=0;tid<kThreads;++tid){ float acc; int64_t o=bwd_weight_partial<T>(a,tile,tid,&acc); if(o>=0) gw[o]+=acc; }
    double me=0; int64_t wb=-1;
    for(int64_t ci=0;ci<g.Cin;++ci) for(int64_t co=0;co<g.Cout;++co) for(int64_t ky=0;ky<g.kh;++ky) for(int64_t kx=0;kx<g.kw;++kx){
      double ref=0;
      for(int64_t n=0;n<g.N;++n) for(int64_t i=0;i<g.Hin;++i) for(int64_t j=0;j<g.Win;++j){
        int64_t y=i*g.sh+ky-g.oy, xx=j*g.sw+kx-g.ox; if(y<0||y>=g.H||xx<0||xx>=g.W) continue;
        ref+=xf[((n*g.Cin+ci)*g.Hin+i)*g.Win+j]*gof[((n*g.Cout+co)*g.H+y)*g.W+xx]; }
      int64_t p=(ci*g.Cout+co)*K+ky*g.kw+kx;
      double err=std::fabs(gw[p]-ref)/(1.0+std::fabs(ref)); if(!(err<=me)){me=err;wb=p;} ++checks; }
    report("bwd_weight", me, wb);
  }
}

// Non-finite inputs: the dense forward and input-gradient items must give conv_transpose2d's
// pattern of NaN and +-inf: every weight is multiplied, zeros included (0 * inf = NaN), and no
// tap conv_transpose2d uses is masked away. (The op sends non-finite inputs down the dense path.)
enum Cls { FIN, NAN_, PINF, NINF };
static Cls cls(double v) { return std::isnan(v) ? NAN_ : std::isinf(v) ? (v > 0 ? PINF : NINF) : FIN; }

template <typename T>
void nonfinite_case(const Geometry& g, float bad) {
  const int64_t K = g.kh * g.kw, xs[4] = {g.Cin * g.Hin * g.Win, g.Hin * g.Win, g.Win, 1};
  std::vector<T> x(g.N * xs[0]), w(g.Cin * g.Cout * K);
  for (auto& v : x) v = q<T>(rf());
  for (size_t e = 0; e < w.size(); ++e) w[e] = q<T>((e % 3 == 0) ? 0.f : rf());  // exact zero taps
  x[0] = q<T>(bad);                               // a corner,
  x[(g.N - 1) * xs[0] + xs[0] - 1] = q<T>(bad);   // the last element,
  x[xs[1] * (g.Cin / 2) + g.Win * (g.Hin / 2) + g.Win / 2] = q<T>(bad);  // and the middle
  const int64_t Hf = (g.Hin - 1) * g.sh + g.kh, Wf = (g.Win - 1) * g.sw + g.kw;
  std::vector<double> full(g.N * g.Cout * Hf * Wf, 0.0);  // scatter without skipping zero weights
  for (int64_t n = 0; n < g.N; ++n) for (int64_t ci = 0; ci < g.Cin; ++ci) for (int64_t i = 0; i < g.Hin; ++i)
    for (int64_t j = 0; j < g.Win; ++j) { double xv = to_float(x[n * xs[0] + ci * xs[1] + i * xs[2] + j]);
      for (int64_t co = 0; co < g.Cout; ++co) for (int64_t ky = 0; ky < g.kh; ++ky) for (int64_t kx = 0; kx < g.kw; ++kx)
        full[((n * g.Cout + co) * Hf + i * g.sh + ky) * Wf + j * g.sw + kx] += xv * to_float(w[(ci * g.Cout + co) * K + ky * g.kw + kx]); }
  std::vector<T> out(g.N * g.Cout * g.H * g.W, q<T>(0.f));
  auto a = make_fwd_args<T, kFwdRowsDense, kFwdChannelsDense>(g, false);
  a.x = x.data(); for (int d = 0; d < 4; ++d) { a.xs[d] = xs[d]; a.ss[d] = 0; }
  a.weight = w.data(); a.bias = nullptr; a.skip = nullptr; a.out = out.data();
  const bool k2s = g.kh == 2 * g.sh && g.kw == 2 * g.sw;
  for (int64_t idx = 0; idx < a.total; ++idx) {
    if (k2s) fwd_item<T, false, true, kFwdRowsDense, kFwdChannelsDense>(a, idx);
    else fwd_item<T, false, false, kFwdRowsDense, kFwdChannelsDense>(a, idx); }
  long bad_fwd = 0, nonfinite = 0;
  for (int64_t n = 0; n < g.N; ++n) for (int64_t co = 0; co < g.Cout; ++co) for (int64_t h = 0; h < g.H; ++h)
    for (int64_t ww = 0; ww < g.W; ++ww) {
      Cls want = cls(full[((n * g.Cout + co) * Hf + g.oy + h) * Wf + g.ox + ww]);
      nonfinite += want != FIN;
      bad_fwd += cls(to_float(out[((n * g.Cout + co) * g.H + h) * g.W + ww])) != want; }
  // Input gradient of a grad_out holding the same values: sum over co, ky, kx of grad_out * weight.
  std::vector<T> go(g.N * g.Cout * g.H * g.W);
  for (auto& v : go) v = q<T>(rf());
  go[0] = q<T>(bad); go[go.size() / 2] = q<T>(bad);
  std::vector<T> gx(g.N * g.Cin * g.Hin * g.Win, q<T>(0.f));
  auto b = make_bwd_input_args<T, kBwdInChannelsDense>(g, false);
  b.grad_out = go.data(); b.weight = w.data(); b.grad_x = gx.data();
  const int64_t G = int64_t{1} << b.lg;
  for (int64_t e0 = 0; e0 < b.total; e0 += G) { float sum[kBwdInChannelsDense] = {};
    for (int64_t l = 0; l < G; ++l) { float acc[kBwdInChannelsDense] = {}; bwd_input_partial<T, false, kBwdInChannelsDense>(b, e0 + l, acc);
      for (int c = 0; c < kBwdInChannelsDense; ++c) sum[c] += acc[c]; }
    bwd_input_store<T, kBwdInChannelsDense>(b, e0, sum); }
  long bad_bwd = 0;
  for (int64_t n = 0; n < g.N; ++n) for (int64_t ci = 0; ci < g.Cin; ++ci) for (int64_t i = 0; i < g.Hin; ++i)
    for (int64_t j = 0; j < g.Win; ++j) { double ref = 0;
      for (int64_t co = 0; co < g.Cout; ++co) for (int64_t ky = 0; ky < g.kh; ++ky) for (int64_t kx = 0; kx < g.kw; ++kx) {
        int64_t y = i * g.sh + ky - g.oy, xx = j * g.sw + kx - g.ox; if (y < 0 || y >= g.H || xx < 0 || xx >= g.W) continue;
        ref += to_float(go[((n * g.Cout + co) * g.H + y) * g.W + xx]) * to_float(w[(ci * g.Cout + co) * K + ky * g.kw + kx]); }
      bad_bwd += cls(to_float(gx[((n * g.Cin + ci) * g.Hin + i) * g.Win + j])) != cls(ref); }
  if (bad_fwd || bad_bwd || !nonfinite) { ++failures;
    printf("FAIL nonfinite %g dtype=%zu k%ldx%ld s%ldx%ld: fwd %ld, bwd_input %ld elements differ (%ld non-finite)\n",
           bad, sizeof(T), g.kh, g.kw, g.sh, g.sw, bad_fwd, bad_bwd, nonfinite); }
}

Geometry mk(int64_t N,int64_t Cin,int64_t Cout,int64_t Hin,int64_t Win,int64_t kh,int64_t kw,int64_t sh,int64_t sw,int64_t oy,int64_t ox,int64_t H,int64_t W,int64_t sy,int64_t sx){
  const int64_t Hf=(Hin-1)*sh+kh, Wf=(Win-1)*sw+kw;
  if (H<=0) H=Hf-oy; if (W<=0) W=Wf-ox;
  if (oy+H>Hf || ox+W>Wf) { printf("invalid test geometry\n"); std::exit(2); }
  return Geometry{N,Cin,Cout,Hin,Win,kh,kw,H,W,sh,sw,oy,ox,sy,sx};
}

template <typename T> void all(const Case& c, double tol){ run_case<T>(c,tol); }

int main() {
  { // Divider
    std::vector<int64_t> ds={1,2,3,5,7,8,21,500,4900,65535,65536,65537,(1LL<<30)-1,1LL<<30,(1LL<<30)+1,INT32_MAX-1,INT32_MAX};
    for(int t=0;t<2000;++t) ds.push_back(ri(1,INT32_MAX));
    long bad=0;
    for(int64_t d: ds){ Divider dv=Divider::make(d);
      std::vector<int64_t> ns={0,1,d-1,d,d+1,2*d-1,2*d,INT32_MAX,INT32_MAX-1,(INT32_MAX/d)*d,(INT32_MAX/d)*d-1};
      for(int t=0;t<3000;++t) ns.push_back(ri(0,INT32_MAX));
      for(int64_t nn: ns){ if(nn<0||nn>INT32_MAX) continue; int64_t q; int64_t r=dv.divmod(nn,true,q); if(q!=nn/d||r!=nn%d) {if(bad++<5) printf("Divider bad d=%ld n=%ld q=%ld\n",d,nn,q);} int64_t q2; dv.divmod(nn,false,q2); if(q2!=nn/d) ++bad; } }
    printf("divider: %ld bad\n", bad); if (bad) ++failures;
  }
  std::vector<Case> cases;
  std::uniform_int_distribution<int> coin(0,1);
  // FCN stages (shrunk batch/channels where the naive reference would be slow)
  cases.push_back({mk(1,21,21,16,16,4,4,2,2,0,0,0,0,5,5),false,false,true,0});   // upscore2 full (34)
  cases.push_back({mk(1,21,21,16,16,4,4,2,2,0,0,0,0,5,5),true,false,true,1});
  cases.push_back({mk(1,5,5,34,34,4,4,2,2,0,0,70,70,9,9),true,false,true,2});     // upscore_pool4
  cases.push_back({mk(1,3,3,70,70,16,16,8,8,31,31,500,500,0,0),true,false,false,0}); // upscore8 depthwise
  cases.push_back({mk(1,2,3,70,70,16,16,8,8,31,31,500,500,0,0),false,true,false,1}); // upscore8 dense small C
  cases.push_back({mk(1,2,2,16,16,64,64,32,32,19,19,500,500,0,0),true,false,false,0}); // FCN-32s
  cases.push_back({mk(2,3,3,34,34,32,32,16,16,27,27,500,500,0,0),false,true,false,2}); // FCN-16s
  // edge geometries
  cases.push_back({mk(2,3,4,5,7,1,1,2,3,0,0,0,0,0,0),false,true,true,0});   // k < s: holes
  cases.push_back({mk(2,3,4,5,7,5,3,3,2,1,2,0,0,1,0),false,true,true,1});   // k not multiple of s
  cases.push_back({mk(1,4,4,6,5,3,3,1,1,0,0,0,0,0,0),true,true,true,2});   // s = 1
  cases.push_back({mk(1,2,2,2,3,5,70,50,64,3,1,0,0,0,0),false,true,true,0});  // huge stride, G = 32
  cases.push_back({mk(1,2,2,1,1,4,4,2,2,3,3,1,1,0,0),true,true,true,0});   // 1x1
  cases.push_back({mk(3,9,17,7,9,4,6,2,3,1,4,0,0,2,1),false,true,true,2});
  cases.push_back({mk(1,1,1,97,3,4,4,2,2,1,0,0,0,0,0),true,false,true,1});
  for (int t=0;t<kRandomK2s;++t){  // k == 2s
    int64_t N=ri(1,3),Cin=ri(1,10),Hin=ri(1,12),Win=ri(1,12),sh=ri(1,6),sw=ri(1,6),kh=2*sh,kw=2*sw;
    bool dw=coin(rng); int64_t Cout = dw?Cin:ri(1,11);
    int64_t Hf=(Hin-1)*sh+kh, Wf=(Win-1)*sw+kw; int64_t oy=ri(0,Hf-1), ox=ri(0,Wf-1); int64_t H=ri(1,Hf-oy), W=ri(1,Wf-ox);
    cases.push_back({Geometry{N,Cin,Cout,Hin,Win,kh,kw,H,W,sh,sw,oy,ox,ri(0,3),ri(0,3)},dw,(bool)coin(rng),(bool)coin(rng),(int)ri(0,2)});
  }
  for (int t=0;t<kRandomGeneral;++t){
    int64_t N=ri(1,3),Cin=ri(1,10),Hin=ri(1,12),Win=ri(1,12),kh=ri(1,9),kw=ri(1,9),sh=ri(1,6),sw=ri(1,6);
    bool dw=coin(rng); int64_t Cout = dw?Cin:ri(1,11);
    int64_t Hf=(Hin-1)*sh+kh, Wf=(Win-1)*sw+kw; int64_t oy=ri(0,Hf-1), ox=ri(0,Wf-1); int64_t H=ri(1,Hf-oy), W=ri(1,Wf-ox);
    cases.push_back({Geometry{N,Cin,Cout,Hin,Win,kh,kw,H,W,sh,sw,oy,ox,ri(0,3),ri(0,3)},dw,(bool)coin(rng),(bool)coin(rng),(int)ri(0,2)});
  }
  for (auto& c: cases){ all<float>(c,2e-5); all<__half>(c,2e-2); all<__nv_bfloat16>(c,8e-2); }
  {  // non-finite inputs, on FCN's k == 2s stages, the general path and upscore8's geometry
    const Geometry geoms[] = {mk(2,3,4,5,6,4,4,2,2,1,1,0,0,0,0), mk(1,3,3,5,7,5,3,2,2,0,1,0,0,0,0),
                              mk(1,2,3,4,5,16,16,8,8,5,5,20,25,0,0)};
    long before = failures;
    for (const auto& g : geoms) for (float bad : {NAN, INFINITY, -INFINITY}) {
      nonfinite_case<float>(g, bad); nonfinite_case<__half>(g, bad); nonfinite_case<__nv_bfloat16>(g, bad); }
    printf("nonfinite: %ld bad\n", failures - before);
  }
  force_slow = true;
  for (auto& c: cases){ all<float>(c,2e-5); }
  force_slow = false;
  printf("k2s runs %ld\n", k2s_cases);
  printf("%zu cases x 3 dtypes, %ld element checks, %d failures\n", cases.size(), checks, failures);
  return failures?1:0;
}
