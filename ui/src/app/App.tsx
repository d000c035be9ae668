import { lazy, Suspense, useEffect, type ReactNode } from "react";
import { Badge, MantineProvider, Modal, createTheme, type CSSVariablesResolver } from "@mantine/core";
import { QueryClient, QueryClientProvider, useQueryClient } from "@tanstack/react-query";
import { BrowserRouter, Navigate, Route, Routes, useLocation, useNavigate } from "react-router-dom";
import { ApiError, clearToken, getToken, onAuthProblem } from "../api/client";
import { SignIn } from "../pages/SignIn";
import { SelectionProvider, useMe } from "./session";
import { Shell } from "./Shell";
import { PageLoader } from "./PageLoader";

const PasswordChange = lazy(() => import("../pages/Account").then((m) => ({ default: m.PasswordChange })));
const Profile = lazy(() => import("../pages/Account").then((m) => ({ default: m.Profile })));
const Wizard = lazy(() => import("../pages/Wizard"));
const Workspaces = lazy(() => import("../pages/Workspaces").then((m) => ({ default: m.Workspaces })));
const WorkspaceDetail = lazy(() => import("../pages/Workspaces").then((m) => ({ default: m.WorkspaceDetail })));
const Environments = lazy(() => import("../pages/Environments"));
const Connections = lazy(() => import("../pages/Connections"));
const Resources = lazy(() => import("../pages/Resources"));
const ApiKeys = lazy(() => import("../pages/ApiKeys"));
const Users = lazy(() => import("../pages/Users"));
const Roles = lazy(() => import("../pages/Roles"));
const DataPlanes = lazy(() => import("../pages/DataPlanes"));
const Prices = lazy(() => import("../pages/Prices"));
const Usage = lazy(() => import("../pages/Usage"));
const Pools = lazy(() => import("../pages/Pools"));
const Playground = lazy(() => import("../pages/Playground"));
const Batches = lazy(() => import("../pages/Batches"));
const Activity = lazy(() => import("../pages/Activity"));

const theme = createTheme({
  primaryColor: "indigo",
  primaryShade: { light: 7, dark: 8 },
  defaultRadius: "md",
  fontFamily: "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
  components: {
    Modal: Modal.extend({ defaultProps: { closeButtonProps: { "aria-label": "Close" } } }),
    // a badge in a narrow table cell keeps its whole word
    Badge: Badge.extend({ styles: { root: { flexShrink: 0, overflow: "visible" }, label: { overflow: "visible" } } }),
  },
});

// text of light and subtle variants (badges, alerts, active links, subtle
// buttons), dimmed text and errors with WCAG AA contrast in both themes
const contrast: CSSVariablesResolver = () => ({
  variables: {},
  light: {
    "--mantine-color-indigo-light-color": "#364fc7",
    "--mantine-color-red-light-color": "#c92a2a",
    "--mantine-color-green-light-color": "#1b5e28",
    "--mantine-color-gray-light-color": "#495057",
    "--mantine-color-yellow-light-color": "#6b4700",
    "--mantine-color-blue-light-color": "#1864ab",
    "--mantine-color-orange-light-color": "#a84300",
    "--mantine-color-teal-light-color": "#066649",
    "--mantine-color-error": "#c92a2a",
    "--mantine-color-dimmed": "#5c636a",
    "--mantine-color-placeholder": "#6c737a",
    "--mantine-primary-color-light-color": "#364fc7",
  },
  dark: {
    "--mantine-color-indigo-light-color": "#91a7ff",
    "--mantine-color-red-light-color": "#ffa8a8",
    "--mantine-color-green-light-color": "#8ce99a",
    "--mantine-color-gray-light-color": "#ced4da",
    "--mantine-color-yellow-light-color": "#ffe066",
    "--mantine-color-blue-light-color": "#a5d8ff",
    "--mantine-color-orange-light-color": "#ffc078",
    "--mantine-color-teal-light-color": "#96f2d7",
    "--mantine-color-error": "#ff8787",
    "--mantine-color-dimmed": "#a8adb4",
    "--mantine-color-placeholder": "#9096a0",
    "--mantine-primary-color-light-color": "#91a7ff",
  },
});

const queryClient = new QueryClient({
  defaultOptions: {
    queries: {
      retry: (n, e) => !(e instanceof ApiError && e.status >= 400 && e.status < 500) && n < 2,
      refetchOnWindowFocus: false,
    },
  },
});


/** 401: back to sign-in; 403 password_change_required: to the password page. */
function AuthWatcher() {
  const nav = useNavigate();
  const qc = useQueryClient();
  useEffect(
    () =>
      onAuthProblem((e) => {
        if (e.status === 401) {
          clearToken();
          qc.clear();
          nav("/signin", { replace: true });
        } else {
          nav("/password", { replace: true });
        }
      }),
    [nav, qc],
  );
  return null;
}

function RequireAuth({ children, allowChange }: { children: ReactNode; allowChange?: boolean }) {
  const loc = useLocation();
  const me = useMe();
  if (!getToken()) return <Navigate to="/signin" replace state={{ from: loc.pathname }} />;
  if (me.isLoading) return <PageLoader />;
  if (me.data?.state === "CHANGE_PASSWORD" && !allowChange) return <Navigate to="/password" replace />;
  return <>{children}</>;
}

export function App() {
  return (
    <MantineProvider theme={theme} defaultColorScheme="auto" cssVariablesResolver={contrast}>
      <QueryClientProvider client={queryClient}>
        <BrowserRouter>
          <AuthWatcher />
          <Routes>
            <Route path="/signin" element={<SignIn />} />
            <Route
              path="/password"
              element={
                <RequireAuth allowChange>
                  <Suspense fallback={<PageLoader />}>
                    <PasswordChange />
                  </Suspense>
                </RequireAuth>
              }
            />
            <Route
              element={
                <RequireAuth>
                  <SelectionProvider>
                    <Shell />
                  </SelectionProvider>
                </RequireAuth>
              }
            >
              <Route index element={<Navigate to="/setup" replace />} />
              <Route path="/setup" element={<Wizard />} />
              <Route path="/profile" element={<Profile />} />
              <Route path="/workspaces" element={<Workspaces />} />
              <Route path="/workspaces/:id" element={<WorkspaceDetail />} />
              <Route path="/environments" element={<Environments />} />
              <Route path="/connections" element={<Connections />} />
              <Route path="/resources" element={<Resources />} />
              <Route path="/api-keys" element={<ApiKeys />} />
              <Route path="/users" element={<Users />} />
              <Route path="/roles" element={<Roles />} />
              <Route path="/dataplanes" element={<DataPlanes />} />
              <Route path="/prices" element={<Prices />} />
              <Route path="/usage" element={<Usage />} />
              <Route path="/pools" element={<Pools />} />
              <Route path="/playground" element={<Playground />} />
              <Route path="/batches" element={<Batches />} />
              <Route path="/activity" element={<Activity />} />
              <Route path="*" element={<Navigate to="/setup" replace />} />
            </Route>
          </Routes>
        </BrowserRouter>
      </QueryClientProvider>
    </MantineProvider>
  );
}
