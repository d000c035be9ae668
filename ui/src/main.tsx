import "@mantine/core/styles.css";
import "./index.css";
import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { takeTokenFromFragment } from "./api/client";
import { App } from "./app/App";

// the OIDC callback's token arrives in the fragment: take it before anything renders
takeTokenFromFragment();

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
